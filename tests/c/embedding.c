/*
 * Embedding libcti_core from C without surprises (issue 18), as a C program
 * sees it: one writer per store across processes, read-only handles that
 * follow a writer in another process, kill -9 of the writer, foreign files
 * left byte for byte, fork (also while other threads are inside SQLite),
 * what a claim callback may call, subscriptions, and the result codes each
 * function documents.
 *
 *   embedding all DIR        runs every section in DIR (a fresh directory)
 *   embedding S1,S2,... DIR  runs the sections named
 *   embedding writer DB      a second process: opens DB for writing, says
 *                            "ready PID", claims N more addresses for each
 *                            "claim N" line on stdin ("claimed TOTAL"), and
 *                            closes at end of input
 *
 * Prints "PASS <section>" per section; exits non-zero on any failure. Every
 * wait is bounded (alarm(), deadlines) so that a hang fails instead of
 * hanging CI. Needs -lsqlite3 to make foreign databases and to change a store
 * behind the library's back.
 *
 * Result codes each function documents, and where they are checked here
 * (PANIC is a caught Rust panic: not reachable on purpose, nowhere tested):
 *   cti_store_open           OK, INVALID_ARGUMENT, OPEN_FAILED, LOCKED: open.
 *                            UNAVAILABLE (a schema upgrade that cannot commit): not reached.
 *   cti_store_open_readonly  OK, INVALID_ARGUMENT, OPEN_FAILED: open.
 *   cti_claim                OK, INVALID_*, NOT_IPV4, RATE_LIMITED: codes; READ_ONLY:
 *                            writer_lock; FORKED: fork; WRONG_THREAD: callback;
 *                            UNAVAILABLE: tamper. CLOSED (a store closing under a
 *                            running call, which the header forbids): not reached.
 *   cti_claim_async          the same, UNAVAILABLE when the queue is full: flood;
 *                            its callback gets OK (everywhere) or UNAVAILABLE: tamper.
 *   cti_subscribe            OK, INVALID_ARGUMENT: subscribe; READ_ONLY: writer_lock;
 *                            FORKED: fork. UNAVAILABLE (no thread): not reached.
 *   cti_blocks/ranks/ranks_top/score_compat_json, cti_recent(_compat)_json, cti_user_json,
 *   cti_stats_json           OK, INVALID_ARGUMENT, UNKNOWN_WINDOW, NOT_FOUND,
 *                            INVALID_NICK: codes; FORKED: fork.
 *   cti_store_set_limits, cti_store_set_nick_limits
 *                            OK, INVALID_ARGUMENT (NULL, a burst of 0): codes; FORKED: fork.
 *   cti_limits_default, cti_nick_limits_default  OK, INVALID_ARGUMENT: abi.
 *   cti_validate_nick        OK, INVALID_NICK, INVALID_ARGUMENT: abi.
 *   cti_health               OK, INVALID_ARGUMENT: codes; UNAVAILABLE: tamper, flood;
 *                            FORKED: fork; WRONG_THREAD: callback. CLOSED: not reached.
 *   cti_check                OK, INVALID_ARGUMENT: codes; INCONSISTENT: tamper;
 *                            READ_ONLY: writer_lock; FORKED: fork; WRONG_THREAD:
 *                            callback. UNAVAILABLE, CLOSED: not reached.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cti_core.h"

/* Every wait in this program ends after this many seconds. */
#define DEADLINE 20

static int failures = 0;
static const char *self_path;

#define EXPECT(cond, ...)                                                        \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__);               \
            fprintf(stderr, __VA_ARGS__);                                        \
            fprintf(stderr, " (last error: %s)\n", cti_last_error());           \
            failures++;                                                          \
        }                                                                        \
    } while (0)

/* A call that must return `want`. */
#define EXPECT_RC(call, want)                                                     \
    do {                                                                          \
        CtiResult rc_ = (call);                                                   \
        EXPECT(rc_ == (want), "%s returned %d, expected %s", #call, (int)rc_, #want); \
    } while (0)

static char *path_in(const char *dir, const char *name) {
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, name) < 0) abort();
    return p;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static char *suffixed(const char *path, const char *suffix) {
    char *p = NULL;
    if (asprintf(&p, "%s%s", path, suffix) < 0) abort();
    return p;
}

static CtiStore *open_store(const char *path) {
    CtiStore *s = NULL;
    CtiResult rc = cti_store_open(path, &s);
    EXPECT(rc == CTI_RESULT_OK && s, "open %s -> %d", path, (int)rc);
    return s;
}

static void no_limits(const CtiStore *s) {
    CtiLimits off = {0, 0, 0, 0};
    CtiNickLimits nick_off = {0, 0, 0, 0};
    EXPECT_RC(cti_store_set_limits(s, &off), CTI_RESULT_OK);
    EXPECT_RC(cti_store_set_nick_limits(s, &nick_off), CTI_RESULT_OK);
}

/* The integer after `"key":` in the first object of `json` that starts with `anchor`. */
static long json_number(const char *json, const char *anchor, const char *key) {
    const char *at = anchor ? strstr(json, anchor) : json;
    if (!at) return -1;
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *v = strstr(at, pattern);
    return v ? strtol(v + strlen(pattern), NULL, 10) : -1;
}

/* Claims recorded in block `block` in the `all` window, or -1. */
static long block_total(const CtiStore *s, int block) {
    char *json = NULL;
    long total = -1;
    if (cti_blocks_json(s, "all", &json) == CTI_RESULT_OK) {
        char anchor[32];
        snprintf(anchor, sizeof anchor, "{\"block\":%d,", block);
        total = json_number(json, anchor, "total");
    }
    cti_string_free(json);
    return total;
}

/* Polls until block `block` holds `want` claims, for up to DEADLINE seconds. */
static int wait_total(const CtiStore *s, int block, long want) {
    for (int i = 0; i < DEADLINE * 50; i++) {
        if (block_total(s, block) == want) return 1;
        usleep(20000);
    }
    return 0;
}

static void deadline_in(struct timespec *ts, int seconds) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += seconds;
}

/* Waits under `m` until `*flag >= want`; 0 on timeout. */
static int wait_flag(pthread_mutex_t *m, pthread_cond_t *c, const int *flag, int want) {
    struct timespec ts;
    deadline_in(&ts, DEADLINE);
    int ok = 1;
    pthread_mutex_lock(m);
    while (*flag < want && ok) ok = pthread_cond_timedwait(c, m, &ts) == 0;
    ok = *flag >= want;
    pthread_mutex_unlock(m);
    return ok;
}

/* Waits for `pid` for up to DEADLINE seconds (then kills it); its status, or -1. */
static int reap(pid_t pid) {
    int status = 0;
    for (int i = 0; i < DEADLINE * 50; i++) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid) return status;
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* FNV-1a of a whole file, and its size; the bytes into *copy if not NULL. */
static unsigned long long file_hash(const char *path, size_t *size, char **copy) {
    FILE *f = fopen(path, "rb");
    unsigned long long h = 1469598103934665603ULL;
    *size = 0;
    if (!f) return 0;
    char *bytes = NULL;
    size_t cap = 0;
    int c;
    while ((c = fgetc(f)) != EOF) {
        h = (h ^ (unsigned char)c) * 1099511628211ULL;
        if (copy) {
            if (*size == cap) bytes = realloc(bytes, cap = cap ? cap * 2 : 4096);
            bytes[*size] = (char)c;
        }
        (*size)++;
    }
    fclose(f);
    if (copy) *copy = bytes;
    return h;
}

/* Runs SQL on a database with SQLite itself, as another program would. */
static int sql(const char *path, const char *statements) {
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, statements, NULL, NULL, NULL);
    if (rc != SQLITE_OK) fprintf(stderr, "sqlite: %s\n", db ? sqlite3_errmsg(db) : "?");
    sqlite3_close(db);
    return rc == SQLITE_OK;
}

/* Callbacks of calls that must fail: the library never calls them then. */
static void never_claimed(void *user_data, CtiResult result, const char *text) {
    (void)user_data, (void)result, (void)text;
    abort();
}

static void never_event(void *user_data, const char *json) {
    (void)user_data, (void)json;
    abort();
}

/* ---- a second process ------------------------------------------------- */

struct child {
    pid_t pid;
    int to;   /* its stdin */
    int from; /* its stdout */
};

/* A line from `fd` into buf, waiting up to DEADLINE seconds; 0 on EOF or timeout. */
static int read_line(int fd, char *buf, size_t n) {
    size_t len = 0;
    while (len + 1 < n) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, DEADLINE * 1000) != 1) return 0;
        char c;
        if (read(fd, &c, 1) != 1) return 0;
        if (c == '\n') break;
        buf[len++] = c;
    }
    buf[len] = 0;
    return 1;
}

/* Starts this program as `writer DB` and waits for its "ready PID". */
static int spawn_writer(struct child *c, const char *db) {
    int in[2], out[2];
    if (pipe(in) || pipe(out)) return 0;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        execl(self_path, self_path, "writer", db, (char *)NULL);
        _exit(127);
    }
    close(in[0]), close(out[1]);
    c->pid = pid, c->to = in[1], c->from = out[0];
    char line[128];
    int ok = read_line(c->from, line, sizeof line) && strncmp(line, "ready ", 6) == 0 &&
             atoi(line + 6) == pid;
    EXPECT(ok, "the writer process did not start (%s)", line);
    return ok;
}

static long child_claims(struct child *c, long n) {
    char line[128];
    dprintf(c->to, "claim %ld\n", n);
    if (!read_line(c->from, line, sizeof line) || strncmp(line, "claimed ", 8)) return -1;
    return atol(line + 8);
}

static void end_child(struct child *c) {
    close(c->to);
    close(c->from);
}

static int writer_main(const char *db) {
    CtiStore *s = NULL;
    if (cti_store_open(db, &s) != CTI_RESULT_OK) {
        fprintf(stderr, "writer: %s\n", cti_last_error());
        return 1;
    }
    no_limits(s);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    long total = 0;
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        long n = atol(line + 6);
        for (long i = 0; i < n; i++, total++) {
            char ip[32], nick[8];
            snprintf(ip, sizeof ip, "77.0.%ld.%ld", total / 256, total % 256);
            snprintf(nick, sizeof nick, "w%ld", total % 3);
            if (cti_claim(s, ip, nick, NULL) != CTI_RESULT_OK) {
                fprintf(stderr, "writer: %s\n", cti_last_error());
                return 1;
            }
        }
        printf("claimed %ld\n", total);
        fflush(stdout);
    }
    cti_store_close(s);
    return failures != 0;
}

/* ---- sections ---------------------------------------------------------- */

static void section_abi(const char *dir) {
    (void)dir;
    uint32_t abi = cti_abi_version();
    EXPECT(abi >> 16 == CTI_ABI_MAJOR && (abi & 0xffff) >= CTI_ABI_MINOR, "ABI %u.%u", abi >> 16, abi & 0xffff);
    EXPECT(cti_schema_version() >= 2, "schema %u", cti_schema_version());
    CtiLimits l;
    CtiNickLimits n;
    EXPECT_RC(cti_limits_default(&l), CTI_RESULT_OK);
    EXPECT(l.per_address_per_minute == 60 && l.per_address_burst == 10 && l.per_net24_per_minute == 1200 &&
               l.per_net24_burst == 512,
           "claim limits as documented");
    EXPECT_RC(cti_nick_limits_default(&n), CTI_RESULT_OK);
    EXPECT(n.per_address_per_hour == 30 && n.per_address_burst == 10 && n.per_net24_per_hour == 240 &&
               n.per_net24_burst == 60,
           "new-name limits as documented");
    EXPECT_RC(cti_limits_default(NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_nick_limits_default(NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_validate_nick("fine_nick"), CTI_RESULT_OK);
    EXPECT_RC(cti_validate_nick("not fine"), CTI_RESULT_INVALID_NICK);
    EXPECT_RC(cti_validate_nick(NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_validate_nick("\xff"), CTI_RESULT_INVALID_ARGUMENT);
    /* NULL is ignored by the three freeing calls. */
    cti_string_free(NULL);
    cti_unsubscribe(NULL);
    cti_store_close(NULL);
    /* A 1 MB path: the message is cut at CTI_LAST_ERROR_MAX bytes. */
    size_t len = strlen(dir) + 1 + (1u << 20);
    char *huge = malloc(len + 1);
    snprintf(huge, len + 1, "%s/", dir);
    memset(huge + strlen(dir) + 1, 'x', 1u << 20);
    huge[len] = 0;
    CtiStore *s = NULL;
    EXPECT_RC(cti_store_open(huge, &s), CTI_RESULT_OPEN_FAILED);
    size_t cut = strlen(cti_last_error());
    EXPECT(cut <= CTI_LAST_ERROR_MAX && cut > CTI_LAST_ERROR_MAX / 2, "message of %zu bytes", cut);
    EXPECT_RC(cti_store_open_readonly(huge, &s), CTI_RESULT_OPEN_FAILED);
    EXPECT(strlen(cti_last_error()) <= CTI_LAST_ERROR_MAX, "read-only message capped");
    EXPECT(s == NULL, "no handle on failure");
    free(huge);
}

static void section_open(const char *dir) {
    char *db = path_in(dir, "open.db");
    CtiStore *s = NULL, *second = (CtiStore *)&s;
    EXPECT_RC(cti_store_open(NULL, &s), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_store_open(db, NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_store_open("\xff\xfe", &s), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_store_open_readonly(NULL, &s), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_store_open_readonly(db, NULL), CTI_RESULT_INVALID_ARGUMENT);
    /* Read-only needs an existing store: nothing is created. */
    EXPECT_RC(cti_store_open_readonly(db, &s), CTI_RESULT_OPEN_FAILED);
    EXPECT(!exists(db), "a read-only open created the file");
    char *missing_dir = path_in(dir, "no/such/dir.db");
    EXPECT_RC(cti_store_open(missing_dir, &s), CTI_RESULT_OPEN_FAILED);
    /* A directory, /dev/null, a FIFO: refused, nothing made beside them. */
    EXPECT_RC(cti_store_open(dir, &s), CTI_RESULT_OPEN_FAILED);
    EXPECT(strstr(cti_last_error(), "not a regular file"), "says why");
    EXPECT_RC(cti_store_open("/dev/null", &s), CTI_RESULT_OPEN_FAILED);
    EXPECT_RC(cti_store_open_readonly("/dev/null", &s), CTI_RESULT_OPEN_FAILED);
    char *fifo = path_in(dir, "fifo"), *fifo_lock = suffixed(fifo, "-lock");
    EXPECT(mkfifo(fifo, 0600) == 0, "mkfifo");
    EXPECT_RC(cti_store_open(fifo, &s), CTI_RESULT_OPEN_FAILED);
    EXPECT(!exists(fifo_lock), "a lock file was made beside a FIFO");
    /* An empty file becomes a store; created stores are private (0600). */
    char *empty = path_in(dir, "empty.db");
    close(open(empty, O_CREAT | O_WRONLY, 0644));
    EXPECT_RC(cti_store_open_readonly(empty, &s), CTI_RESULT_OPEN_FAILED);
    s = open_store(empty);
    cti_store_close(s);
    s = open_store(db);
    struct stat st;
    EXPECT(stat(db, &st) == 0 && (st.st_mode & 0777) == 0600, "mode %o", st.st_mode & 0777);
    /* One writer: a second writable handle in this process is refused. */
    EXPECT_RC(cti_store_open(db, &second), CTI_RESULT_LOCKED);
    EXPECT(second == NULL, "*out cleared on failure");
    char pid[32];
    snprintf(pid, sizeof pid, "this process (%d)", (int)getpid());
    EXPECT(strstr(cti_last_error(), pid), "the message names this process");
    /* Read-only handles beside it are fine, any number. */
    CtiStore *r1 = NULL, *r2 = NULL;
    EXPECT_RC(cti_store_open_readonly(db, &r1), CTI_RESULT_OK);
    EXPECT_RC(cti_store_open_readonly(db, &r2), CTI_RESULT_OK);
    EXPECT_RC(cti_claim(s, "1.2.3.4", "alice", NULL), CTI_RESULT_OK);
    EXPECT(wait_total(r1, 1, 1) && wait_total(r2, 1, 1), "readers follow the writer");
    cti_store_close(r1);
    cti_store_close(r2);
    cti_store_close(s);
    /* Closed: the next writer may open it. */
    s = open_store(db);
    cti_store_close(s);
    /* A newer schema than this library: refused both ways. */
    EXPECT(sql(db, "PRAGMA user_version = 99;"), "bump user_version");
    EXPECT_RC(cti_store_open(db, &s), CTI_RESULT_OPEN_FAILED);
    EXPECT(strstr(cti_last_error(), "99"), "names the schema");
    EXPECT_RC(cti_store_open_readonly(db, &s), CTI_RESULT_OPEN_FAILED);
    free(db), free(missing_dir), free(fifo), free(fifo_lock), free(empty);
}

static void section_foreign(const char *dir) {
    struct {
        const char *name;
        const char *sql;
    } cases[] = {
        {"app.db", "CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ann');"},
        {"players.db",
         "PRAGMA journal_mode = WAL; CREATE TABLE players (id INTEGER, score REAL);"
         "INSERT INTO players VALUES (1, 2.5);"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *db = path_in(dir, cases[i].name);
        EXPECT(sql(db, cases[i].sql), "make %s", cases[i].name);
        size_t before_size, after_size;
        char *before = NULL, *after = NULL;
        unsigned long long before_hash = file_hash(db, &before_size, &before);
        CtiStore *s = (CtiStore *)&s;
        EXPECT_RC(cti_store_open(db, &s), CTI_RESULT_OPEN_FAILED);
        EXPECT(strstr(cti_last_error(), "not a cti store"), "says why");
        EXPECT(s == NULL, "no handle");
        EXPECT_RC(cti_store_open_readonly(db, &s), CTI_RESULT_OPEN_FAILED);
        unsigned long long after_hash = file_hash(db, &after_size, &after);
        EXPECT(before_hash == after_hash && before_size == after_size && before_size > 0 &&
                   memcmp(before, after, before_size) == 0,
               "%s changed: %zu bytes %llx -> %zu bytes %llx", cases[i].name, before_size, before_hash,
               after_size, after_hash);
        free(before), free(after), free(db);
    }
    char *wal = path_in(dir, "app.db-wal");
    EXPECT(!exists(wal), "a WAL was made for a rollback-journal database");
    free(wal);
}

static void section_writer_lock(const char *dir) {
    char *db = path_in(dir, "shared.db");
    struct child w;
    if (!spawn_writer(&w, db)) return;
    CtiStore *s = NULL;
    EXPECT_RC(cti_store_open(db, &s), CTI_RESULT_LOCKED);
    char holder[48];
    snprintf(holder, sizeof holder, "process %d", (int)w.pid);
    EXPECT(strstr(cti_last_error(), holder), "the message names the writer's pid %d", (int)w.pid);
    CtiStore *r = NULL;
    EXPECT_RC(cti_store_open_readonly(db, &r), CTI_RESULT_OK);
    if (r) {
        /* The writer keeps the store open and claims in steps; the reader
         * sees each step without reopening. */
        long seen = 0;
        const long steps[] = {25, 50, 300};
        for (int i = 0; i < 3; i++) {
            long claimed = child_claims(&w, steps[i] - seen);
            EXPECT(claimed == steps[i], "writer claimed %ld", claimed);
            EXPECT(wait_total(r, 77, steps[i]), "the reader saw %ld of %ld", block_total(r, 77), steps[i]);
            seen = steps[i];
        }
        EXPECT_RC(cti_claim(r, "1.2.3.4", "reader", NULL), CTI_RESULT_READ_ONLY);
        EXPECT_RC(cti_claim_async(r, "1.2.3.4", "reader", never_claimed, NULL), CTI_RESULT_READ_ONLY);
        CtiSubscription *sub = (CtiSubscription *)&sub;
        EXPECT_RC(cti_subscribe(r, never_event, NULL, &sub), CTI_RESULT_READ_ONLY);
        EXPECT(sub == NULL, "no subscription");
        EXPECT_RC(cti_check(r), CTI_RESULT_READ_ONLY);
        EXPECT_RC(cti_health(r), CTI_RESULT_OK);
        char *json = NULL;
        EXPECT_RC(cti_stats_json(r, &json), CTI_RESULT_OK);
        cti_string_free(json);
        EXPECT_RC(cti_store_open(db, &s), CTI_RESULT_LOCKED);
        cti_store_close(r);
    }
    end_child(&w);
    int status = reap(w.pid);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer status %#x", status);
    s = open_store(db);
    EXPECT(block_total(s, 77) == 300, "all 300 claims stored");
    EXPECT_RC(cti_check(s), CTI_RESULT_OK);
    cti_store_close(s);
    free(db);
}

static void section_kill9(const char *dir) {
    char *db = path_in(dir, "killed.db");
    struct child w;
    if (!spawn_writer(&w, db)) return;
    EXPECT(child_claims(&w, 10) == 10, "claims before the kill");
    CtiStore *s = NULL;
    EXPECT_RC(cti_store_open(db, &s), CTI_RESULT_LOCKED);
    kill(w.pid, SIGKILL);
    int status = reap(w.pid);
    EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %#x", status);
    end_child(&w);
    /* The kernel dropped the dead writer's lock. */
    s = open_store(db);
    EXPECT(block_total(s, 77) == 10, "acknowledged claims survive");
    EXPECT_RC(cti_claim(s, "2.2.2.2", "next", NULL), CTI_RESULT_OK);
    EXPECT_RC(cti_check(s), CTI_RESULT_OK);
    cti_store_close(s);
    free(db);
}

struct events {
    pthread_mutex_t m;
    pthread_cond_t c;
    int count;
    int claims;
    long last;
    int out_of_order;
    CtiSubscription *self; /* unsubscribed from its own first event if set */
};

static void on_event(void *user_data, const char *json) {
    struct events *e = user_data;
    long n = json_number(json, NULL, "event");
    int claims = 0;
    for (const char *p = json; (p = strstr(p, "\"ip\":")); p++) claims++;
    pthread_mutex_lock(&e->m);
    if (e->last && n != e->last + 1) e->out_of_order++;
    e->last = n;
    e->claims += claims;
    e->count++;
    pthread_cond_broadcast(&e->c);
    pthread_mutex_unlock(&e->m);
    if (e->self) {
        cti_unsubscribe(e->self); /* allowed from its own callback */
        e->self = NULL;
    }
}

static void section_fork(const char *dir) {
    char *db = path_in(dir, "forked.db"), *own = path_in(dir, "child.db"), *err = path_in(dir, "child.stderr");
    CtiStore *s = open_store(db);
    if (!s) return;
    struct events e = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, NULL};
    CtiSubscription *sub = NULL;
    EXPECT_RC(cti_subscribe(s, on_event, &e, &sub), CTI_RESULT_OK);
    EXPECT_RC(cti_claim(s, "1.2.3.4", "parent", NULL), CTI_RESULT_OK);
    EXPECT(wait_flag(&e.m, &e.c, &e.count, 1), "first event");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(DEADLINE); /* a hang ends the child with SIGALRM */
        int fd = open(err, O_CREAT | O_WRONLY | O_TRUNC, 0600);
        dup2(fd, 2);
        char *json = (char *)&json;
        CtiLimits off = {0, 0, 0, 0};
        CtiNickLimits nick_off = {0, 0, 0, 0};
        CtiSubscription *sub2 = NULL;
        EXPECT_RC(cti_claim(s, "1.2.3.5", "child", &json), CTI_RESULT_FORKED);
        EXPECT(json == NULL, "no answer");
        char parent[48];
        snprintf(parent, sizeof parent, "process %d", (int)getppid());
        EXPECT(strstr(cti_last_error(), parent), "names the opening process");
        EXPECT_RC(cti_claim_async(s, "1.2.3.6", "child", never_claimed, NULL), CTI_RESULT_FORKED);
        EXPECT_RC(cti_health(s), CTI_RESULT_FORKED);
        EXPECT_RC(cti_check(s), CTI_RESULT_FORKED);
        EXPECT_RC(cti_blocks_json(s, NULL, &json), CTI_RESULT_FORKED);
        EXPECT_RC(cti_ranks_json(s, NULL, &json), CTI_RESULT_FORKED);
        EXPECT_RC(cti_ranks_top_json(s, NULL, 10, &json), CTI_RESULT_FORKED);
        EXPECT_RC(cti_recent_json(s, 10, &json), CTI_RESULT_FORKED);
        EXPECT_RC(cti_user_json(s, "parent", NULL, &json), CTI_RESULT_FORKED);
        EXPECT_RC(cti_score_compat_json(s, NULL, &json), CTI_RESULT_FORKED);
        EXPECT_RC(cti_recent_compat_json(s, 10, &json), CTI_RESULT_FORKED);
        EXPECT_RC(cti_stats_json(s, &json), CTI_RESULT_FORKED);
        EXPECT_RC(cti_subscribe(s, on_event, &e, &sub2), CTI_RESULT_FORKED);
        EXPECT_RC(cti_store_set_limits(s, &off), CTI_RESULT_FORKED);
        EXPECT_RC(cti_store_set_nick_limits(s, &nick_off), CTI_RESULT_FORKED);
        /* Ending the parent's subscription and store here only forgets them. */
        cti_unsubscribe(sub);
        cti_store_close(s);
        /* The parent's file stays the parent's to write; the child reads it
         * or opens a store of its own. */
        CtiStore *mine = NULL;
        EXPECT_RC(cti_store_open(db, &mine), CTI_RESULT_LOCKED);
        EXPECT_RC(cti_store_open_readonly(db, &mine), CTI_RESULT_OK);
        EXPECT(block_total(mine, 1) == 1, "the child reads the parent's claim");
        cti_store_close(mine);
        mine = open_store(own);
        EXPECT_RC(cti_claim(mine, "1.2.3.7", "child", NULL), CTI_RESULT_OK);
        cti_store_close(mine);
        _exit(failures ? 1 : 0);
    }
    int status = reap(pid);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child: exit %d, signal %d (%d is SIGALRM: it hung)",
           WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0, SIGALRM);
    FILE *f = fopen(err, "r");
    char said[4096] = "";
    if (f) {
        size_t n = fread(said, 1, sizeof said - 1, f);
        said[n] = 0;
        fclose(f);
    }
    EXPECT(said[0] == 0, "the child said: %s", said);
    /* The parent's store and subscription carry on. */
    EXPECT_RC(cti_claim(s, "1.2.3.8", "parent", NULL), CTI_RESULT_OK);
    EXPECT(wait_flag(&e.m, &e.c, &e.count, 2), "event after the fork");
    EXPECT(e.claims == 2 && e.out_of_order == 0, "%d claims in events", e.claims);
    EXPECT(block_total(s, 1) == 2, "the child's claims went nowhere");
    EXPECT_RC(cti_check(s), CTI_RESULT_OK);
    cti_unsubscribe(sub);
    cti_store_close(s);
    free(db), free(own), free(err);
}

/* Claims and reads without pause, for section_fork_busy. */
struct busy {
    const CtiStore *store;
    atomic_int stop;
    atomic_uint next;
};

static void *keep_busy(void *arg) {
    struct busy *b = arg;
    while (!atomic_load(&b->stop)) {
        unsigned n = atomic_fetch_add(&b->next, 1);
        char ip[32], *json = NULL;
        snprintf(ip, sizeof ip, "10.%u.%u.%u", (n >> 16) & 255, (n >> 8) & 255, n & 255);
        cti_claim(b->store, ip, "busy", NULL);
        if (cti_blocks_json(b->store, NULL, &json) == CTI_RESULT_OK) cti_string_free(json);
    }
    return NULL;
}

/* Forks while other threads are inside SQLite: a lock one of them held at the
 * fork must not hang the child's own stores (it did, 5 forks in 100). */
static void section_fork_busy(const char *dir) {
    /* A hung child ends by its alarm, before reap() would give up on it. */
    enum { FORKS = 100, THREADS = 2, CHILD_SECONDS = DEADLINE / 2 };
    char *db = path_in(dir, "busy.db"), *own = path_in(dir, "busy-child.db");
    CtiStore *s = open_store(db);
    if (!s) return;
    no_limits(s);
    struct busy b = {s, 0, 0};
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, keep_busy, &b);
    int hung = 0, failed = 0;
    for (int round = 0; round < FORKS && !hung; round++) {
        usleep((unsigned)(round * 7919 % 3000));
        pid_t pid = fork();
        if (pid == 0) {
            alarm(CHILD_SECONDS);
            CtiStore *mine = NULL;
            char *json = NULL;
            if (cti_store_open_readonly(db, &mine) != CTI_RESULT_OK) _exit(3);
            if (cti_blocks_json(mine, NULL, &json) != CTI_RESULT_OK) _exit(4);
            cti_string_free(json);
            cti_store_close(mine);
            unlink(own);
            if (cti_store_open(own, &mine) != CTI_RESULT_OK) _exit(5);
            if (cti_claim(mine, "1.2.3.4", "child", NULL) != CTI_RESULT_OK) _exit(6);
            cti_store_close(mine);
            _exit(0);
        }
        int status = reap(pid);
        if (status == -1 || (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)) hung++;
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed++;
    }
    atomic_store(&b.stop, 1);
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    EXPECT(hung == 0, "a forked child hung in its own store");
    EXPECT(failed == 0, "%d forked children failed", failed);
    EXPECT_RC(cti_check(s), CTI_RESULT_OK);
    cti_store_close(s);
    free(db), free(own);
}

struct restricted {
    pthread_mutex_t m;
    pthread_cond_t c;
    const CtiStore *store;
    int done, chained_done;
    CtiResult outcome, claim, health, check, blocks, async, validate, chained;
    char text[256];
};

static void on_chained(void *user_data, CtiResult result, const char *text) {
    struct restricted *r = user_data;
    (void)text;
    pthread_mutex_lock(&r->m);
    r->chained = result;
    r->chained_done = 1;
    pthread_cond_broadcast(&r->c);
    pthread_mutex_unlock(&r->m);
}

/* Runs on the library's callback thread: what may it call? */
static void on_claimed(void *user_data, CtiResult result, const char *text) {
    struct restricted *r = user_data;
    char *json = NULL;
    r->outcome = result;
    snprintf(r->text, sizeof r->text, "%s", text);
    r->claim = cti_claim(r->store, "9.9.9.9", "inner", NULL);
    r->health = cti_health(r->store);
    r->check = cti_check(r->store);
    r->blocks = cti_blocks_json(r->store, NULL, &json);
    cti_string_free(json);
    r->async = cti_claim_async(r->store, "9.9.9.10", "inner", on_chained, r);
    r->validate = cti_validate_nick("fine");
    pthread_mutex_lock(&r->m);
    r->done = 1;
    pthread_cond_broadcast(&r->c);
    pthread_mutex_unlock(&r->m);
}

static void section_callback(const char *dir) {
    char *db = path_in(dir, "callback.db");
    CtiStore *s = open_store(db);
    if (!s) return;
    struct restricted r = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, s, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, ""};
    EXPECT_RC(cti_claim_async(s, "8.8.8.8", "outer", on_claimed, &r), CTI_RESULT_OK);
    EXPECT(wait_flag(&r.m, &r.c, &r.done, 1), "the callback ran and returned");
    EXPECT(r.outcome == CTI_RESULT_OK && strstr(r.text, "\"ip\":\"8.8.8.8\""), "outcome %d %s", r.outcome, r.text);
    EXPECT(r.claim == CTI_RESULT_WRONG_THREAD, "cti_claim in a callback -> %d", r.claim);
    EXPECT(r.health == CTI_RESULT_WRONG_THREAD, "cti_health in a callback -> %d", r.health);
    EXPECT(r.check == CTI_RESULT_WRONG_THREAD, "cti_check in a callback -> %d", r.check);
    EXPECT(r.blocks == CTI_RESULT_OK, "reads are allowed -> %d", r.blocks);
    EXPECT(r.async == CTI_RESULT_OK, "cti_claim_async is allowed -> %d", r.async);
    EXPECT(r.validate == CTI_RESULT_OK, "cti_validate_nick is allowed");
    EXPECT(wait_flag(&r.m, &r.c, &r.chained_done, 1) && r.chained == CTI_RESULT_OK, "the chained claim");
    /* Off the callback thread the same calls work. */
    EXPECT_RC(cti_health(s), CTI_RESULT_OK);
    EXPECT_RC(cti_check(s), CTI_RESULT_OK);
    EXPECT(block_total(s, 8) == 1 && block_total(s, 9) == 1, "two claims, the refused one not stored");
    cti_store_close(s);
    free(db);
}

static void section_subscribe(const char *dir) {
    char *db = path_in(dir, "events.db");
    CtiStore *s = open_store(db);
    if (!s) return;
    no_limits(s);
    struct events e = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, NULL};
    struct events once = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, NULL};
    CtiSubscription *sub = (CtiSubscription *)&sub, *self_ending = NULL;
    EXPECT_RC(cti_subscribe(NULL, on_event, &e, &sub), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT(sub == NULL, "*out cleared");
    EXPECT_RC(cti_subscribe(s, NULL, &e, &sub), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_subscribe(s, on_event, &e, NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_subscribe(s, on_event, &e, &sub), CTI_RESULT_OK);
    EXPECT_RC(cti_subscribe(s, on_event, &once, &self_ending), CTI_RESULT_OK);
    pthread_mutex_lock(&once.m);
    once.self = self_ending;
    pthread_mutex_unlock(&once.m);
    const int n = 40;
    for (int i = 0; i < n; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "5.0.%d.%d", i / 256, i % 256);
        EXPECT_RC(cti_claim(s, ip, i % 2 ? "odd" : "even", NULL), CTI_RESULT_OK);
    }
    EXPECT(wait_flag(&e.m, &e.c, &e.claims, n), "%d of %d claims delivered", e.claims, n);
    EXPECT(e.out_of_order == 0 && e.claims == n, "once each, in order");
    cti_unsubscribe(sub);
    int after = e.count;
    EXPECT_RC(cti_claim(s, "6.0.0.1", "late", NULL), CTI_RESULT_OK);
    usleep(200000);
    EXPECT(e.count == after, "an event after cti_unsubscribe");
    EXPECT(wait_flag(&once.m, &once.c, &once.count, 1), "the self-ending subscriber's first event");
    EXPECT(once.count == 1, "the self-ending subscriber got %d events", once.count);
    char *json = NULL;
    EXPECT_RC(cti_stats_json(s, &json), CTI_RESULT_OK);
    EXPECT(json && json_number(json, NULL, "events_delivered") >= n, "delivered counted: %s", json);
    cti_string_free(json);
    cti_store_close(s);
    free(db);
}

/* Every code of the read, claim and limit calls that plain input reaches. */
static void section_codes(const char *dir) {
    char *db = path_in(dir, "codes.db");
    CtiStore *s = open_store(db);
    if (!s) return;
    char *json = (char *)&json;
    EXPECT_RC(cti_claim(NULL, "1.2.3.4", "a", NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_claim(s, NULL, "a", NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_claim(s, "1.2.3.4", NULL, NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_claim(s, "1.2.3.4", "\xff", &json), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT(json == NULL, "*out_json cleared");
    EXPECT_RC(cti_claim(s, "1.2.3.4", "bad nick", NULL), CTI_RESULT_INVALID_NICK);
    EXPECT_RC(cti_claim(s, "1.2.3", "a", NULL), CTI_RESULT_INVALID_ADDRESS);
    EXPECT_RC(cti_claim(s, "2001:db8::1", "a", NULL), CTI_RESULT_NOT_IPV4);
    EXPECT_RC(cti_claim_async(s, "1.2.3.4", "a", NULL, NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_claim_async(s, "1.2.3.4", "bad nick", never_claimed, NULL), CTI_RESULT_INVALID_NICK);
    EXPECT_RC(cti_claim_async(s, "x", "a", never_claimed, NULL), CTI_RESULT_INVALID_ADDRESS);
    EXPECT_RC(cti_claim_async(s, "::1", "a", never_claimed, NULL), CTI_RESULT_NOT_IPV4);
    EXPECT_RC(cti_claim(s, "::ffff:1.2.3.4", "alice", &json), CTI_RESULT_OK);
    EXPECT(json && strstr(json, "\"ip\":\"1.2.3.4\""), "the claim: %s", json);
    cti_string_free(json);

    /* Rate limits: RATE_LIMITED with a wait, and retry_after back to 0 after any other result. */
    CtiLimits tight = {60, 1, 0, 0}, zero_burst = {60, 0, 0, 0};
    CtiNickLimits nick_zero_burst = {0, 0, 10, 0};
    EXPECT_RC(cti_store_set_limits(NULL, &tight), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_store_set_limits(s, NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_store_set_limits(s, &zero_burst), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_store_set_nick_limits(s, NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_store_set_nick_limits(s, &nick_zero_burst), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_store_set_limits(s, &tight), CTI_RESULT_OK);
    EXPECT_RC(cti_claim(s, "3.3.3.3", "alice", NULL), CTI_RESULT_OK);
    EXPECT_RC(cti_claim(s, "3.3.3.3", "bob", NULL), CTI_RESULT_RATE_LIMITED);
    EXPECT(cti_last_retry_after() >= 1, "retry after %u", cti_last_retry_after());
    EXPECT_RC(cti_claim_async(s, "3.3.3.3", "bob", never_claimed, NULL), CTI_RESULT_RATE_LIMITED);
    EXPECT_RC(cti_claim(s, "3.3.3.4", "alice", NULL), CTI_RESULT_OK);
    EXPECT(cti_last_retry_after() == 0, "retry_after %u after a success", cti_last_retry_after());
    EXPECT_RC(cti_claim(s, "3.3.3.3", "bob", NULL), CTI_RESULT_RATE_LIMITED);
    EXPECT_RC(cti_validate_nick("x y"), CTI_RESULT_INVALID_NICK);
    EXPECT(cti_last_retry_after() == 0, "retry_after %u after another error", cti_last_retry_after());
    /* New names: 10 from one address, then RATE_LIMITED until turned off. */
    CtiLimits off = {0, 0, 0, 0};
    CtiNickLimits nick_default, nick_off = {0, 0, 0, 0};
    EXPECT_RC(cti_store_set_limits(s, &off), CTI_RESULT_OK);
    EXPECT_RC(cti_nick_limits_default(&nick_default), CTI_RESULT_OK);
    for (uint32_t i = 0; i < nick_default.per_address_burst; i++) {
        char nick[16];
        snprintf(nick, sizeof nick, "new%u", i);
        EXPECT_RC(cti_claim(s, "4.4.4.4", nick, NULL), CTI_RESULT_OK);
    }
    EXPECT_RC(cti_claim(s, "4.4.4.4", "onemore", NULL), CTI_RESULT_RATE_LIMITED);
    EXPECT(strstr(cti_last_error(), "new names"), "says which limit");
    EXPECT_RC(cti_store_set_nick_limits(s, &nick_off), CTI_RESULT_OK);
    EXPECT_RC(cti_claim(s, "4.4.4.4", "onemore", NULL), CTI_RESULT_OK);

    /* Reads. */
    const char *windows[] = {NULL, "hour", "day", "week", "month", "year", "all"};
    for (size_t i = 0; i < sizeof windows / sizeof windows[0]; i++) {
        EXPECT_RC(cti_blocks_json(s, windows[i], &json), CTI_RESULT_OK);
        cti_string_free(json);
        EXPECT_RC(cti_ranks_json(s, windows[i], &json), CTI_RESULT_OK);
        cti_string_free(json);
        EXPECT_RC(cti_ranks_top_json(s, windows[i], 1, &json), CTI_RESULT_OK);
        EXPECT(strstr(json, "\"ranked\":"), "a top list counts the whole ranking");
        cti_string_free(json);
        EXPECT_RC(cti_score_compat_json(s, windows[i], &json), CTI_RESULT_OK);
        cti_string_free(json);
        EXPECT_RC(cti_user_json(s, "alice", windows[i], &json), CTI_RESULT_OK);
        cti_string_free(json);
    }
    EXPECT_RC(cti_blocks_json(s, "fortnight", &json), CTI_RESULT_UNKNOWN_WINDOW);
    EXPECT(json == NULL, "*out cleared");
    EXPECT_RC(cti_ranks_json(s, "fortnight", &json), CTI_RESULT_UNKNOWN_WINDOW);
    EXPECT_RC(cti_score_compat_json(s, "fortnight", &json), CTI_RESULT_UNKNOWN_WINDOW);
    EXPECT_RC(cti_user_json(s, "alice", "fortnight", &json), CTI_RESULT_UNKNOWN_WINDOW);
    EXPECT_RC(cti_user_json(s, "nobody", NULL, &json), CTI_RESULT_NOT_FOUND);
    EXPECT_RC(cti_user_json(s, "bad nick", NULL, &json), CTI_RESULT_INVALID_NICK);
    EXPECT_RC(cti_user_json(s, NULL, NULL, &json), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_blocks_json(NULL, NULL, &json), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_blocks_json(s, NULL, NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_ranks_json(s, NULL, NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_ranks_top_json(NULL, NULL, 5, &json), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_ranks_top_json(s, NULL, 5, NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_ranks_top_json(s, "fortnight", 5, &json), CTI_RESULT_UNKNOWN_WINDOW);
    EXPECT_RC(cti_score_compat_json(NULL, NULL, &json), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_recent_json(NULL, 5, &json), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_recent_json(s, 5, NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_recent_compat_json(NULL, 5, &json), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_stats_json(NULL, &json), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_stats_json(s, NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_health(NULL), CTI_RESULT_INVALID_ARGUMENT);
    EXPECT_RC(cti_check(NULL), CTI_RESULT_INVALID_ARGUMENT);
    const uint32_t limits[] = {0, 1, 4000000000u};
    for (int i = 0; i < 3; i++) {
        EXPECT_RC(cti_recent_json(s, limits[i], &json), CTI_RESULT_OK);
        cti_string_free(json);
        EXPECT_RC(cti_recent_compat_json(s, limits[i], &json), CTI_RESULT_OK);
        cti_string_free(json);
    }
    EXPECT_RC(cti_stats_json(s, &json), CTI_RESULT_OK);
    EXPECT(json_number(json, NULL, "claims_rate_limited") == 4, "rate-limited counted: %s", json);
    cti_string_free(json);
    EXPECT_RC(cti_health(s), CTI_RESULT_OK);
    EXPECT_RC(cti_check(s), CTI_RESULT_OK);
    cti_store_close(s);
    free(db);
}

struct flood {
    pthread_mutex_t m;
    pthread_cond_t c;
    int answered, ok, unavailable, other;
};

static void on_flood(void *user_data, CtiResult result, const char *text) {
    struct flood *f = user_data;
    (void)text;
    pthread_mutex_lock(&f->m);
    f->answered++;
    if (result == CTI_RESULT_OK) f->ok++;
    else if (result == CTI_RESULT_UNAVAILABLE) f->unavailable++;
    else f->other++;
    pthread_cond_broadcast(&f->c);
    pthread_mutex_unlock(&f->m);
}

/* Another program changes the store: UNAVAILABLE until reopened. Aggregates
 * changed while it was closed: INCONSISTENT. */
static void section_tamper(const char *dir) {
    char *db = path_in(dir, "tamper.db");
    CtiStore *s = open_store(db);
    if (!s) return;
    EXPECT_RC(cti_claim(s, "11.0.0.1", "alice", NULL), CTI_RESULT_OK);
    EXPECT(sql(db, "INSERT INTO meta VALUES ('written_by', 1);"), "write behind its back");
    EXPECT_RC(cti_claim(s, "11.0.0.2", "alice", NULL), CTI_RESULT_UNAVAILABLE);
    EXPECT(strstr(cti_last_error(), "another program"), "says why");
    struct flood f = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};
    EXPECT_RC(cti_claim_async(s, "11.0.0.3", "alice", on_flood, &f), CTI_RESULT_OK);
    EXPECT(wait_flag(&f.m, &f.c, &f.answered, 1) && f.unavailable == 1, "the callback got UNAVAILABLE");
    EXPECT_RC(cti_health(s), CTI_RESULT_UNAVAILABLE);
    cti_store_close(s);
    s = open_store(db);
    EXPECT_RC(cti_health(s), CTI_RESULT_OK);
    EXPECT_RC(cti_check(s), CTI_RESULT_OK);
    EXPECT(block_total(s, 11) == 1, "only the first claim is stored");
    cti_store_close(s);
    EXPECT(sql(db, "UPDATE counts SET total = total + 1;"), "break a tally");
    s = open_store(db);
    EXPECT_RC(cti_check(s), CTI_RESULT_INCONSISTENT);
    EXPECT(strstr(cti_last_error(), "tallies"), "names the difference");
    cti_store_close(s);
    free(db);
}

/* The writer's queue full: claims are refused at once, nothing queued is lost. */
static void section_flood(const char *dir) {
    char *db = path_in(dir, "flood.db");
    CtiStore *s = open_store(db);
    if (!s) return;
    no_limits(s);
    EXPECT_RC(cti_claim(s, "12.0.0.1", "first", NULL), CTI_RESULT_OK);
    /* Another connection holds SQLite's write lock: the writer waits on it. */
    sqlite3 *blocker = NULL;
    EXPECT(sqlite3_open(db, &blocker) == SQLITE_OK && sqlite3_exec(blocker, "BEGIN IMMEDIATE", 0, 0, 0) == SQLITE_OK,
           "hold the write lock");
    struct flood f = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};
    int queued = 0;
    CtiResult rc = CTI_RESULT_OK;
    while (queued < 200000) {
        char ip[32];
        snprintf(ip, sizeof ip, "%d.%d.%d.%d", 100 + (queued >> 16), (queued >> 8) & 255, queued & 255, 1);
        rc = cti_claim_async(s, ip, "flood", on_flood, &f);
        if (rc != CTI_RESULT_OK) break;
        queued++;
    }
    EXPECT(rc == CTI_RESULT_UNAVAILABLE, "flood ended with %d after %d", (int)rc, queued);
    EXPECT(strstr(cti_last_error(), "overloaded"), "says why");
    EXPECT_RC(cti_health(s), CTI_RESULT_UNAVAILABLE);
    sqlite3_exec(blocker, "ROLLBACK", 0, 0, 0);
    sqlite3_close(blocker);
    struct timespec ts;
    deadline_in(&ts, 60);
    pthread_mutex_lock(&f.m);
    while (f.answered < queued && pthread_cond_timedwait(&f.c, &f.m, &ts) == 0) {
    }
    pthread_mutex_unlock(&f.m);
    EXPECT(f.answered == queued && f.other == 0, "%d of %d answered, %d odd", f.answered, queued, f.other);
    long stored = 0;
    for (int b = 100; b <= 100 + (queued >> 16); b++) stored += block_total(s, b);
    EXPECT(stored == f.ok, "stored %ld, acknowledged %d", stored, f.ok);
    EXPECT_RC(cti_health(s), CTI_RESULT_OK);
    EXPECT_RC(cti_check(s), CTI_RESULT_OK);
    printf("flood: %d queued, %d committed, %d unavailable\n", queued, f.ok, f.unavailable);
    cti_store_close(s);
    free(db);
}

static const struct {
    const char *name;
    void (*run)(const char *dir);
} SECTIONS[] = {
    {"abi", section_abi},           {"open", section_open},         {"foreign", section_foreign},
    {"writer_lock", section_writer_lock}, {"kill9", section_kill9}, {"fork", section_fork},
    {"fork_busy", section_fork_busy},
    {"callback", section_callback}, {"subscribe", section_subscribe}, {"codes", section_codes},
    {"tamper", section_tamper},     {"flood", section_flood},
};

/* Whether `name` is in the comma-separated `list`. */
static int listed(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == 0)) return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s all|SECTION,...|writer DIR|DB\n", argv[0]);
        return 2;
    }
    self_path = argv[0];
    if (strcmp(argv[1], "writer") == 0) return writer_main(argv[2]);
    signal(SIGPIPE, SIG_IGN);
    int ran = 0;
    for (size_t i = 0; i < sizeof SECTIONS / sizeof SECTIONS[0]; i++) {
        if (strcmp(argv[1], "all") && !listed(argv[1], SECTIONS[i].name)) continue;
        int before = failures;
        SECTIONS[i].run(argv[2]);
        printf("%s %s\n", failures == before ? "PASS" : "FAIL", SECTIONS[i].name);
        fflush(stdout);
        ran++;
    }
    if (!ran) {
        fprintf(stderr, "no section in %s\n", argv[1]);
        return 2;
    }
    return failures ? 1 : 0;
}
