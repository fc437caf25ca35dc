/*
 * Using libcti_core from C: claims (a steal and a tie among them), holders and
 * rankings as JSON, the non-blocking claim with a callback, and the error
 * paths. Every string the library returns is freed.
 *
 *   cc -Iinclude examples/claim.c -Ltarget/debug/deps -lcti_core -pthread -o claim
 *   ./claim /tmp/game.db
 *
 * Exits non-zero on any unexpected result.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cti_core.h"

static int failures = 0;

static void expect(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "FAILED: %s (last error: %s)\n", what, cti_last_error());
        failures++;
    }
}

/* Claims and prints the claim JSON. */
static void claim(const CtiStore *store, const char *ip, const char *nick) {
    char *json = NULL;
    CtiResult rc = cti_claim(store, ip, nick, &json);
    expect(rc == CTI_RESULT_OK, "claim");
    if (json) printf("claimed %s\n", json);
    cti_string_free(json);
}

/* Prints one answer of the library and frees it. */
static void show(const char *label, CtiResult rc, char *json) {
    expect(rc == CTI_RESULT_OK, label);
    printf("%s %s\n", label, json ? json : "(none)");
    cti_string_free(json);
}

struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t done;
    int finished;
    CtiResult result;
    char text[512];
};

/* Runs on a library thread after the commit: copy, signal, return quickly. */
static void on_claimed(void *user_data, CtiResult result, const char *text) {
    struct waiter *w = user_data;
    pthread_mutex_lock(&w->lock);
    w->result = result;
    snprintf(w->text, sizeof w->text, "%s", text ? text : "");
    w->finished = 1;
    pthread_cond_signal(&w->done);
    pthread_mutex_unlock(&w->lock);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DATABASE\n", argv[0]);
        return 2;
    }
    uint32_t abi = cti_abi_version();
    printf("libcti_core %s, ABI %u.%u\n", cti_version(), abi >> 16, abi & 0xffff);
    expect(abi >> 16 == CTI_ABI_MAJOR, "ABI major matches the header");

    CtiStore *store = NULL;
    if (cti_store_open(argv[1], &store) != CTI_RESULT_OK) {
        fprintf(stderr, "cannot open %s: %s\n", argv[1], cti_last_error());
        return 1;
    }

    /* alice takes two addresses of 10/8, bob one: alice holds it. */
    claim(store, "10.0.0.1", "alice");
    claim(store, "10.0.0.2", "alice");
    claim(store, "10.0.0.3", "bob");
    /* bob steals one of alice's: 1 to 2, bob holds 10/8. */
    claim(store, "10.0.0.1", "bob");
    /* 20/8 is tied: nobody holds it. */
    claim(store, "20.0.0.1", "alice");
    claim(store, "::ffff:20.0.0.2", "carol");

    /* Call first, then show: C does not order the evaluation of arguments. */
    char *json = NULL;
    CtiResult rc = cti_blocks_json(store, NULL, &json);
    show("blocks", rc, json);
    rc = cti_ranks_json(store, "all", &json);
    show("ranks", rc, json);

    /* A leaderboard's top: the first rows only (`ranked` counts them all). */
    rc = cti_ranks_top_json(store, "all", 10, &json);
    show("top 10", rc, json);
    rc = cti_user_json(store, "bob", NULL, &json);
    show("user", rc, json);

    /* The non-blocking claim: the callback reports the commit. */
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, CTI_RESULT_PANIC, ""};
    expect(cti_claim_async(store, "30.0.0.1", "dave", on_claimed, &w) == CTI_RESULT_OK, "async claim queued");
    pthread_mutex_lock(&w.lock);
    while (!w.finished) pthread_cond_wait(&w.done, &w.lock);
    pthread_mutex_unlock(&w.lock);
    expect(w.result == CTI_RESULT_OK, "async claim committed");
    printf("async %s\n", w.text);

    /* Errors: a clear code, a message, nothing stored. */
    rc = cti_claim(store, "1.2.3.4", "bad nick!", &json);
    expect(rc == CTI_RESULT_INVALID_NICK && json == NULL, "bad nick refused");
    printf("bad nick -> %d: %s\n", (int)rc, cti_last_error());
    rc = cti_claim(store, "2001:db8::1", "alice", NULL);
    expect(rc == CTI_RESULT_NOT_IPV4, "IPv6 refused");
    printf("ipv6 -> %d: %s\n", (int)rc, cti_last_error());
    rc = cti_claim(store, NULL, "alice", NULL);
    expect(rc == CTI_RESULT_INVALID_ARGUMENT, "NULL ip refused");
    rc = cti_claim(NULL, "1.2.3.4", "alice", NULL);
    expect(rc == CTI_RESULT_INVALID_ARGUMENT, "NULL store refused");
    rc = cti_ranks_json(store, "fortnight", &json);
    expect(rc == CTI_RESULT_UNKNOWN_WINDOW && json == NULL, "unknown window refused");
    rc = cti_user_json(store, "nobody", NULL, &json);
    expect(rc == CTI_RESULT_NOT_FOUND && json == NULL, "unknown player");
    rc = cti_blocks_json(store, NULL, NULL);
    expect(rc == CTI_RESULT_INVALID_ARGUMENT, "NULL out refused");

    expect(cti_check(store) == CTI_RESULT_OK, "aggregates equal a recount");
    expect(cti_health(store) == CTI_RESULT_OK, "store writable");
    cti_store_close(store);

    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
