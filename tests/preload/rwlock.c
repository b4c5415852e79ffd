/* Read-lock cycles. Thread 1 takes rw for reading, then m; thread 2 takes m, then rw for
 * reading. With glibc's default rwlock (readers first) a reader never waits for another reader,
 * even with a writer queued, so reads are recursive and the cycle is not a deadlock. With
 * PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP a queued writer holds new readers back: thread 2
 * can wait behind a writer that waits for thread 1, which waits for m: a deadlock.
 *   default   not reported
 *   writer    reported (circular locking dependency)
 *   write     the same cycle through a write lock: reported */
#include "common.h"

pthread_rwlock_t rw;
pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static int write_mode;

NOINLINE void* read_then_mutex(void* arg)
{
    (void)arg;
    CHECK(write_mode ? pthread_rwlock_wrlock(&rw) : pthread_rwlock_rdlock(&rw));
    CHECK(pthread_mutex_lock(&m));
    CHECK(pthread_mutex_unlock(&m));
    CHECK(pthread_rwlock_unlock(&rw));
    return NULL;
}

NOINLINE void* mutex_then_read(void* arg)
{
    (void)arg;
    CHECK(pthread_mutex_lock(&m));
    CHECK(pthread_rwlock_rdlock(&rw));
    /* a second, recursive read: fine for both kinds while no writer waits */
    CHECK(pthread_rwlock_rdlock(&rw));
    CHECK(pthread_rwlock_unlock(&rw));
    CHECK(pthread_rwlock_unlock(&rw));
    CHECK(pthread_mutex_unlock(&m));
    return NULL;
}

int main(int argc, char** argv)
{
    const char* mode = mode_arg(argc, argv);
    pthread_rwlockattr_t attr;
    CHECK(pthread_rwlockattr_init(&attr));
    if (strcmp(mode, "writer") == 0)
        CHECK(pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP));
    else if (strcmp(mode, "write") == 0)
        write_mode = 1;
    else if (strcmp(mode, "default") != 0) {
        fprintf(stderr, "usage: %s default|writer|write\n", argv[0]);
        return 2;
    }
    CHECK(pthread_rwlock_init(&rw, &attr));
    run_on_thread(read_then_mutex, NULL);
    run_on_thread(mutex_then_read, NULL);
    CHECK(pthread_rwlock_destroy(&rw));
    puts("done");
    return 0;
}
