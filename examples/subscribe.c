/*
 * A subscriber in C: commit events from libcti_core as they happen (the
 * claims each commit made visible and the block holders it changed, as JSON),
 * then the same state through a read-only handle, as a backup or analytics
 * tool beside the running writer would read it.
 *
 *   cc -Iinclude examples/subscribe.c -Ltarget/debug/deps -lcti_core -pthread -o subscribe
 *   ./subscribe /tmp/game.db
 *
 * Prints one "event {...}" line per event, "reader {...}" (block 10 as the
 * reader sees it), the two refusals and "ok", as python/examples/subscribe.py does.
 * One writer per database: a second cti_store_open() of the same file, here
 * or in another process, returns CTI_RESULT_LOCKED. After fork() the child
 * gets CTI_RESULT_FORKED from the parent's handles and opens its own.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cti_core.h"

struct printer {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int claims; /* seen in events so far */
};

/* Runs on the subscription's own thread, once per event, in order. `json` is
 * valid only during the call: print (or copy) it and return. */
static void on_event(void *user_data, const char *json) {
    struct printer *p = user_data;
    int claims = 0;
    for (const char *at = json; (at = strstr(at, "\"ip\":")); at++) claims++;
    pthread_mutex_lock(&p->lock);
    printf("event %s\n", json);
    fflush(stdout);
    p->claims += claims;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DATABASE\n", argv[0]);
        return 2;
    }
    CtiStore *store = NULL;
    if (cti_store_open(argv[1], &store) != CTI_RESULT_OK) {
        fprintf(stderr, "cannot open %s: %s\n", argv[1], cti_last_error());
        return 1;
    }
    struct printer p = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    CtiSubscription *sub = NULL;
    if (cti_subscribe(store, on_event, &p, &sub) != CTI_RESULT_OK) {
        fprintf(stderr, "cannot subscribe: %s\n", cti_last_error());
        return 1;
    }

    const char *claims[][2] = {{"10.0.0.1", "alice"}, {"10.0.0.2", "alice"}, {"10.0.0.3", "bob"}, {"10.0.0.1", "bob"}};
    const int n = sizeof claims / sizeof claims[0];
    for (int i = 0; i < n; i++) {
        if (cti_claim(store, claims[i][0], claims[i][1], NULL) != CTI_RESULT_OK) {
            fprintf(stderr, "claim failed: %s\n", cti_last_error());
            return 1;
        }
    }
    /* Events arrive on their own thread: wait (at most 10 s) for all four. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&p.lock);
    while (p.claims < n && pthread_cond_timedwait(&p.changed, &p.lock, &deadline) == 0) {
    }
    int seen = p.claims;
    pthread_mutex_unlock(&p.lock);
    /* Once cti_unsubscribe returns, the callback is not running and will not run. */
    cti_unsubscribe(sub);
    if (seen != n) {
        fprintf(stderr, "saw %d of %d claims in events\n", seen, n);
        return 1;
    }

    /* Read-only handles sit beside the one writer, in this or another process. */
    CtiStore *reader = NULL;
    char *json = NULL;
    if (cti_store_open_readonly(argv[1], &reader) != CTI_RESULT_OK ||
        cti_blocks_json(reader, "all", &json) != CTI_RESULT_OK) {
        fprintf(stderr, "reader: %s\n", cti_last_error());
        return 1;
    }
    const char *block10 = strstr(json, "{\"block\":10,");
    const char *end = block10 ? strchr(block10, '}') : NULL;
    printf("reader %.*s\n", end ? (int)(end - block10 + 1) : 0, block10 ? block10 : "");
    cti_string_free(json);
    int refused = cti_claim(reader, "10.0.0.4", "carol", NULL) == CTI_RESULT_READ_ONLY;
    printf("read-only: %s\n", cti_last_error());
    cti_store_close(reader);

    /* A second writer is refused, naming the holder. */
    CtiStore *second = NULL;
    int locked = cti_store_open(argv[1], &second) == CTI_RESULT_LOCKED;
    printf("locked: %s\n", cti_last_error());
    cti_store_close(store);
    if (!refused || !locked || !block10) return 1;
    printf("ok\n");
    return 0;
}
