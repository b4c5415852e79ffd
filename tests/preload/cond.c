/* Condition variables release their mutex while waiting.
 *   nofalse   a consumer waits on c with m held, and takes n after waking; a producer takes n, then
 *             m to signal: n->m and m->n would be a cycle only if the waiter still held m when the
 *             producer ran with n held - it does not, the wait released m. Also timedwait and
 *             clockwait. Expected: no report.
 *   held      after the wait returns, m is held again: taking it once more (timedlock, so the run
 *             does not hang) is recursive locking - reported, which proves the wait's
 *             re-acquisition was seen.
 *   order     the waiter holds m and then n, and waits on c with m: waking up, it takes m again
 *             while holding n. n->m against the earlier m->n is a real deadlock (a thread holding m
 *             and wanting n meets the waiter holding n and wanting m back): reported. */
#include "common.h"

#include <errno.h>
#include <time.h>

pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t n = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int ready;

static struct timespec in_ms(clockid_t clock, long ms)
{
    struct timespec t;
    clock_gettime(clock, &t);
    t.tv_nsec += ms * 1000000L;
    t.tv_sec += t.tv_nsec / 1000000000L;
    t.tv_nsec %= 1000000000L;
    return t;
}

NOINLINE void* producer(void* arg)
{
    (void)arg;
    CHECK(pthread_mutex_lock(&n));
    CHECK(pthread_mutex_lock(&m));
    ready = 1;
    CHECK(pthread_cond_broadcast(&c));
    CHECK(pthread_mutex_unlock(&m));
    CHECK(pthread_mutex_unlock(&n));
    return NULL;
}

NOINLINE void consume(int how)
{
    pthread_t t;
    ready = 0;
    CHECK(pthread_mutex_lock(&m));
    CHECK(pthread_create(&t, NULL, producer, NULL));
    while (!ready) {
        if (how == 0) {
            CHECK(pthread_cond_wait(&c, &m));
        } else if (how == 1) {
            struct timespec d = in_ms(CLOCK_REALTIME, 50);
            int rc = pthread_cond_timedwait(&c, &m, &d);
            if (rc != 0 && rc != ETIMEDOUT)
                CHECK(rc);
        } else {
            struct timespec d = in_ms(CLOCK_MONOTONIC, 50);
            int rc = pthread_cond_clockwait(&c, &m, CLOCK_MONOTONIC, &d);
            if (rc != 0 && rc != ETIMEDOUT)
                CHECK(rc);
        }
    }
    CHECK(pthread_mutex_unlock(&m));
    CHECK(pthread_join(t, NULL));
    /* after the wait: m then n would be the inverse of the producer's n then m, but m is released */
    CHECK(pthread_mutex_lock(&n));
    CHECK(pthread_mutex_unlock(&n));
}

NOINLINE void wait_then_relock(void)
{
    pthread_t t;
    CHECK(pthread_mutex_lock(&m));
    CHECK(pthread_create(&t, NULL, producer, NULL));
    while (!ready)
        CHECK(pthread_cond_wait(&c, &m));
    struct timespec d = in_ms(CLOCK_REALTIME, 100);
    int rc = pthread_mutex_timedlock(&m, &d); /* a self-deadlock, cut short by the timeout */
    if (rc != ETIMEDOUT)
        fprintf(stderr, "timedlock on a held mutex returned %d\n", rc);
    CHECK(pthread_mutex_unlock(&m));
    CHECK(pthread_join(t, NULL));
}

NOINLINE void* signal_ready(void* arg)
{
    (void)arg;
    CHECK(pthread_mutex_lock(&m));
    ready = 1;
    CHECK(pthread_cond_broadcast(&c));
    CHECK(pthread_mutex_unlock(&m));
    return NULL;
}

NOINLINE void wait_holding_other(void)
{
    pthread_t t;
    CHECK(pthread_mutex_lock(&m));
    CHECK(pthread_mutex_lock(&n));
    CHECK(pthread_create(&t, NULL, signal_ready, NULL));
    while (!ready)
        CHECK(pthread_cond_wait(&c, &m));
    CHECK(pthread_mutex_unlock(&n));
    CHECK(pthread_mutex_unlock(&m));
    CHECK(pthread_join(t, NULL));
}

int main(int argc, char** argv)
{
    const char* mode = mode_arg(argc, argv);
    if (strcmp(mode, "nofalse") == 0) {
        for (int how = 0; how < 3; ++how)
            consume(how);
    } else if (strcmp(mode, "held") == 0) {
        wait_then_relock();
    } else if (strcmp(mode, "order") == 0) {
        wait_holding_other();
    } else {
        fprintf(stderr, "usage: %s nofalse|held|order\n", argv[0]);
        return 2;
    }
    puts("done");
    return 0;
}
