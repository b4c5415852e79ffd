/* Scale: many threads, many live locks, nothing wrong.
 *   threads   2,000 short-lived threads, 8 at a time, each taking a shared mutex and a rwlock
 *             under it, plus a lock of its own that it frees while unlocked: no report, no crash.
 *   locks     100,000 live heap mutexes initialised at one place (one class), each locked once,
 *             then destroyed and freed: no report.
 *   contend   6 threads hammering 4 mutexes in a fixed order, with a shared counter: the total
 *             is exact, and nothing is reported.
 *   signal    (klock run --lock-stat on --lock-stat-signal USR1 --report FILE) contend, then
 *             SIGUSR1 to itself, then wait until FILE shows a lock_stat table before exiting (which
 *             writes the final one): FILE ends up with two tables. */
#include "common.h"

#include <signal.h>
#include <unistd.h>

#define NTHREADS 2000
#define BATCH 8
#define NLOCKS 100000

pthread_mutex_t outer = PTHREAD_MUTEX_INITIALIZER;
pthread_rwlock_t table = PTHREAD_RWLOCK_INITIALIZER;
static long counter;
static pthread_mutex_t ordered[4]
    = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};

NOINLINE void* short_life(void* arg)
{
    (void)arg;
    pthread_mutex_t* own = malloc(sizeof *own);
    CHECK(pthread_mutex_init(own, NULL));
    CHECK(pthread_mutex_lock(&outer));
    CHECK(pthread_rwlock_rdlock(&table));
    CHECK(pthread_mutex_lock(own));
    ++counter;
    CHECK(pthread_mutex_unlock(own));
    CHECK(pthread_rwlock_unlock(&table));
    CHECK(pthread_mutex_unlock(&outer));
    free(own);
    return NULL;
}

NOINLINE void many_threads(void)
{
    for (int i = 0; i < NTHREADS; i += BATCH) {
        pthread_t t[BATCH];
        for (int k = 0; k < BATCH; ++k)
            CHECK(pthread_create(&t[k], NULL, short_life, NULL));
        for (int k = 0; k < BATCH; ++k)
            CHECK(pthread_join(t[k], NULL));
    }
    if (counter != NTHREADS)
        exit(4);
}

NOINLINE void many_locks(void)
{
    pthread_mutex_t** locks = malloc(NLOCKS * sizeof *locks);
    for (int i = 0; i < NLOCKS; ++i) {
        locks[i] = malloc(sizeof **locks);
        CHECK(pthread_mutex_init(locks[i], NULL));
    }
    for (int i = 0; i < NLOCKS; ++i) {
        CHECK(pthread_mutex_lock(locks[i]));
        CHECK(pthread_mutex_unlock(locks[i]));
    }
    for (int i = 0; i < NLOCKS; ++i) {
        CHECK(pthread_mutex_destroy(locks[i]));
        free(locks[i]);
    }
    free(locks);
}

NOINLINE void* hammer(void* arg)
{
    (void)arg;
    for (int i = 0; i < 20000; ++i) {
        for (int k = 0; k < 4; ++k)
            CHECK(pthread_mutex_lock(&ordered[k]));
        ++counter;
        for (int k = 3; k >= 0; --k)
            CHECK(pthread_mutex_unlock(&ordered[k]));
    }
    return NULL;
}

static int table_written(const char* path)
{
    FILE* f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[256];
    int seen = 0;
    while (!seen && fgets(line, sizeof line, f) != NULL)
        seen = strncmp(line, "lock_stat version 0.4", 21) == 0;
    fclose(f);
    return seen;
}

NOINLINE void contend(void)
{
    pthread_t t[6];
    for (int k = 0; k < 6; ++k)
        CHECK(pthread_create(&t[k], NULL, hammer, NULL));
    for (int k = 0; k < 6; ++k)
        CHECK(pthread_join(t[k], NULL));
}

int main(int argc, char** argv)
{
    const char* mode = mode_arg(argc, argv);
    if (strcmp(mode, "threads") == 0) {
        many_threads();
    } else if (strcmp(mode, "locks") == 0) {
        many_locks();
    } else if (strcmp(mode, "contend") == 0) {
        contend();
        if (counter != 6 * 20000)
            return 4;
    } else if (strcmp(mode, "signal") == 0) {
        const char* report = getenv("KLOCK_REPORT_FILE");
        if (report == NULL)
            return 2;
        contend();
        raise(SIGUSR1);
        for (int i = 0; i < 500 && !table_written(report); ++i)
            usleep(10000);
        if (!table_written(report))
            return 5;
    } else {
        fprintf(stderr, "usage: %s threads|locks|contend|signal\n", argv[0]);
        return 2;
    }
    puts("done");
    return 0;
}
