/* Lock misuse that the interposers report in the "BUG: ..." layout, leaving glibc's behaviour
 * as it is (the calls below are undefined behaviour for POSIX but harmless with glibc's normal
 * mutex, which is what makes such bugs linger in real programs).
 *   double_unlock    pthread_mutex already unlocked
 *   wrong_owner      pthread_mutex wrong owner (unlocked by a thread that does not hold it)
 *   errorcheck       the same with an errorcheck mutex: glibc returns EPERM, still reported
 *   destroy_locked   pthread_mutex destroyed while locked
 *   free_locked      pthread_mutex freed while locked
 *   spin_unlock      pthread_spin already unlocked
 *   rwlock_unlock    pthread_rwlock already unlocked
 *   exit_holding     a thread ends holding a mutex: lockdep's "still has locks held!"
 *   clean            correct use of all of the above: nothing reported */
#include "common.h"

#include <errno.h>

pthread_mutex_t shared = PTHREAD_MUTEX_INITIALIZER;

NOINLINE void* unlock_shared(void* arg)
{
    int rc = pthread_mutex_unlock((pthread_mutex_t*)arg);
    return (void*)(long)rc;
}

NOINLINE void* lock_and_leave(void* arg)
{
    CHECK(pthread_mutex_lock((pthread_mutex_t*)arg));
    return NULL;
}

NOINLINE void unlock_twice(void)
{
    CHECK(pthread_mutex_lock(&shared));
    CHECK(pthread_mutex_unlock(&shared));
    const int rc = pthread_mutex_unlock(&shared); /* not a tail call: keep this frame in the trace */
    if (rc != 0)
        printf("second unlock: %d\n", rc);
}

int main(int argc, char** argv)
{
    const char* mode = mode_arg(argc, argv);
    if (strcmp(mode, "double_unlock") == 0) {
        unlock_twice();
    } else if (strcmp(mode, "wrong_owner") == 0 || strcmp(mode, "errorcheck") == 0) {
        pthread_mutex_t m;
        pthread_mutexattr_t a;
        CHECK(pthread_mutexattr_init(&a));
        if (strcmp(mode, "errorcheck") == 0)
            CHECK(pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK));
        CHECK(pthread_mutex_init(&m, &a));
        CHECK(pthread_mutex_lock(&m));
        pthread_t t;
        void* rc;
        CHECK(pthread_create(&t, NULL, unlock_shared, &m));
        CHECK(pthread_join(t, &rc));
        if (strcmp(mode, "errorcheck") == 0) {
            if ((long)rc != EPERM)
                return 4;
            CHECK(pthread_mutex_unlock(&m));
        }
    } else if (strcmp(mode, "destroy_locked") == 0) {
        pthread_mutex_t m;
        CHECK(pthread_mutex_init(&m, NULL));
        CHECK(pthread_mutex_lock(&m));
        if (pthread_mutex_destroy(&m) != EBUSY)
            return 4;
        CHECK(pthread_mutex_unlock(&m));
        CHECK(pthread_mutex_destroy(&m));
    } else if (strcmp(mode, "free_locked") == 0) {
        pthread_mutex_t* m = malloc(sizeof *m);
        CHECK(pthread_mutex_init(m, NULL));
        CHECK(pthread_mutex_lock(m));
        free(m);
    } else if (strcmp(mode, "spin_unlock") == 0) {
        pthread_spinlock_t s;
        CHECK(pthread_spin_init(&s, PTHREAD_PROCESS_PRIVATE));
        CHECK(pthread_spin_lock(&s));
        CHECK(pthread_spin_unlock(&s));
        pthread_spin_unlock(&s);
        CHECK(pthread_spin_destroy(&s));
    } else if (strcmp(mode, "rwlock_unlock") == 0) {
        pthread_rwlock_t rw;
        CHECK(pthread_rwlock_init(&rw, NULL));
        CHECK(pthread_rwlock_wrlock(&rw));
        CHECK(pthread_rwlock_unlock(&rw));
        pthread_rwlock_unlock(&rw);
    } else if (strcmp(mode, "exit_holding") == 0) {
        static pthread_mutex_t left = PTHREAD_MUTEX_INITIALIZER;
        run_on_thread(lock_and_leave, &left);
    } else if (strcmp(mode, "clean") == 0) {
        pthread_mutex_t* m = malloc(sizeof *m);
        CHECK(pthread_mutex_init(m, NULL));
        CHECK(pthread_mutex_lock(m));
        CHECK(pthread_mutex_unlock(m));
        CHECK(pthread_mutex_destroy(m));
        free(m);
        pthread_spinlock_t s;
        CHECK(pthread_spin_init(&s, PTHREAD_PROCESS_PRIVATE));
        CHECK(pthread_spin_lock(&s));
        CHECK(pthread_spin_unlock(&s));
        CHECK(pthread_spin_destroy(&s));
        pthread_rwlock_t rw;
        CHECK(pthread_rwlock_init(&rw, NULL));
        CHECK(pthread_rwlock_rdlock(&rw));
        CHECK(pthread_rwlock_rdlock(&rw));
        CHECK(pthread_rwlock_unlock(&rw));
        CHECK(pthread_rwlock_unlock(&rw));
        CHECK(pthread_rwlock_wrlock(&rw));
        CHECK(pthread_rwlock_unlock(&rw));
        CHECK(pthread_rwlock_destroy(&rw));
        pthread_mutexattr_t a;
        CHECK(pthread_mutexattr_init(&a));
        CHECK(pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE));
        pthread_mutex_t r;
        CHECK(pthread_mutex_init(&r, &a));
        CHECK(pthread_mutex_lock(&r));
        CHECK(pthread_mutex_lock(&r));
        CHECK(pthread_mutex_trylock(&r));
        CHECK(pthread_mutex_unlock(&r));
        CHECK(pthread_mutex_unlock(&r));
        CHECK(pthread_mutex_unlock(&r));
        CHECK(pthread_mutex_destroy(&r));
        CHECK(pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK));
        CHECK(pthread_mutex_init(&r, &a));
        CHECK(pthread_mutex_lock(&r));
        if (pthread_mutex_lock(&r) != EDEADLK)
            return 4;
        CHECK(pthread_mutex_unlock(&r));
        CHECK(pthread_mutex_destroy(&r));
    } else {
        fprintf(stderr,
            "usage: %s double_unlock|wrong_owner|errorcheck|destroy_locked|free_locked|"
            "spin_unlock|rwlock_unlock|exit_holding|clean\n",
            argv[0]);
        return 2;
    }
    puts("done");
    return 0;
}
