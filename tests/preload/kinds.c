/* The other lock kinds and mutex types, each in an ABBA across two threads that never overlap
 * (reported) and in correct use (not reported):
 *   mtx_abba      C11 mtx_t (and cnd_t in the "clean" run)
 *   spin_abba     pthread_spinlock_t
 *   pi_abba       priority-inheritance mutexes (PTHREAD_PRIO_INHERIT)
 *   robust        a robust mutex whose owner dies: lockdep reports the thread that ended holding
 *                 it; the next locker gets EOWNERDEAD, makes it consistent, and goes on quietly
 *   clean         correct use of mtx_t/cnd_t, spinlocks, PI and robust mutexes: nothing */
#include "common.h"

#include <errno.h>
#include <threads.h>

static mtx_t mtx_a, mtx_b;
static cnd_t cnd;
static pthread_spinlock_t spin_a, spin_b;
static pthread_mutex_t pi_a, pi_b, robust;
static int flag;

NOINLINE void* mtx_ab(void* arg)
{
    (void)arg;
    mtx_lock(&mtx_a);
    mtx_lock(&mtx_b);
    mtx_unlock(&mtx_b);
    mtx_unlock(&mtx_a);
    return NULL;
}
NOINLINE void* mtx_ba(void* arg)
{
    (void)arg;
    mtx_lock(&mtx_b);
    mtx_lock(&mtx_a);
    mtx_unlock(&mtx_a);
    mtx_unlock(&mtx_b);
    return NULL;
}
NOINLINE void* spin_ab(void* arg)
{
    (void)arg;
    pthread_spin_lock(&spin_a);
    pthread_spin_lock(&spin_b);
    pthread_spin_unlock(&spin_b);
    pthread_spin_unlock(&spin_a);
    return NULL;
}
NOINLINE void* spin_ba(void* arg)
{
    (void)arg;
    pthread_spin_lock(&spin_b);
    pthread_spin_lock(&spin_a);
    pthread_spin_unlock(&spin_a);
    pthread_spin_unlock(&spin_b);
    return NULL;
}
NOINLINE void* pi_ab(void* arg)
{
    (void)arg;
    CHECK(pthread_mutex_lock(&pi_a));
    CHECK(pthread_mutex_lock(&pi_b));
    CHECK(pthread_mutex_unlock(&pi_b));
    CHECK(pthread_mutex_unlock(&pi_a));
    return NULL;
}
NOINLINE void* pi_ba(void* arg)
{
    (void)arg;
    CHECK(pthread_mutex_lock(&pi_b));
    CHECK(pthread_mutex_lock(&pi_a));
    CHECK(pthread_mutex_unlock(&pi_a));
    CHECK(pthread_mutex_unlock(&pi_b));
    return NULL;
}
NOINLINE void* die_holding(void* arg)
{
    (void)arg;
    CHECK(pthread_mutex_lock(&robust));
    return NULL;
}

NOINLINE void* signal_cnd(void* arg)
{
    (void)arg;
    mtx_lock(&mtx_a);
    flag = 1;
    cnd_signal(&cnd);
    mtx_unlock(&mtx_a);
    return NULL;
}

static void init_all(void)
{
    if (mtx_init(&mtx_a, mtx_plain) != thrd_success || mtx_init(&mtx_b, mtx_timed) != thrd_success
        || cnd_init(&cnd) != thrd_success)
        exit(3);
    CHECK(pthread_spin_init(&spin_a, PTHREAD_PROCESS_PRIVATE));
    CHECK(pthread_spin_init(&spin_b, PTHREAD_PROCESS_PRIVATE));
    pthread_mutexattr_t a;
    CHECK(pthread_mutexattr_init(&a));
    CHECK(pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT));
    CHECK(pthread_mutex_init(&pi_a, &a));
    CHECK(pthread_mutex_init(&pi_b, &a));
    CHECK(pthread_mutexattr_init(&a));
    CHECK(pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST));
    CHECK(pthread_mutex_init(&robust, &a));
}

static void robust_recovery(void)
{
    run_on_thread(die_holding, NULL);
    if (pthread_mutex_lock(&robust) != EOWNERDEAD)
        exit(4);
    CHECK(pthread_mutex_consistent(&robust));
    CHECK(pthread_mutex_unlock(&robust));
    CHECK(pthread_mutex_lock(&robust));
    CHECK(pthread_mutex_unlock(&robust));
}

int main(int argc, char** argv)
{
    const char* mode = mode_arg(argc, argv);
    init_all();
    if (strcmp(mode, "mtx_abba") == 0) {
        run_on_thread(mtx_ab, NULL);
        run_on_thread(mtx_ba, NULL);
    } else if (strcmp(mode, "spin_abba") == 0) {
        run_on_thread(spin_ab, NULL);
        run_on_thread(spin_ba, NULL);
    } else if (strcmp(mode, "pi_abba") == 0) {
        run_on_thread(pi_ab, NULL);
        run_on_thread(pi_ba, NULL);
    } else if (strcmp(mode, "robust") == 0) {
        robust_recovery();
    } else if (strcmp(mode, "clean") == 0) {
        run_on_thread(mtx_ab, NULL);
        run_on_thread(spin_ab, NULL);
        run_on_thread(pi_ab, NULL);
        pthread_t t;
        mtx_lock(&mtx_a);
        CHECK(pthread_create(&t, NULL, signal_cnd, NULL));
        while (!flag)
            cnd_wait(&cnd, &mtx_a);
        mtx_unlock(&mtx_a);
        CHECK(pthread_join(t, NULL));
        struct timespec ts = {0, 0};
        if (mtx_timedlock(&mtx_b, &ts) != thrd_success || mtx_trylock(&mtx_a) != thrd_success)
            return 4;
        mtx_unlock(&mtx_a);
        mtx_unlock(&mtx_b);
        mtx_destroy(&mtx_a);
        mtx_destroy(&mtx_b);
        cnd_destroy(&cnd);
    } else {
        fprintf(stderr, "usage: %s mtx_abba|spin_abba|pi_abba|robust|clean\n", argv[0]);
        return 2;
    }
    puts("done");
    return 0;
}
