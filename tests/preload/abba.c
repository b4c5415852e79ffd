/* Lock-order cycles across threads that never run at the same time: nothing deadlocks in this
 * run, lockdep proves that some run could.
 *   abba     thread 1 takes A then B, thread 2 (after thread 1 ended) B then A: reported
 *   abbcca   A->B, B->C, C->A on three threads: reported with "Chain exists of"
 *   ordered  A->B on both threads: not reported
 *   trylock  A then trylock B, and B then A: a trylock cannot deadlock, not reported */
#include "common.h"

pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t lock_c = PTHREAD_MUTEX_INITIALIZER;

NOINLINE void nest(pthread_mutex_t* outer, pthread_mutex_t* inner)
{
    CHECK(pthread_mutex_lock(outer));
    CHECK(pthread_mutex_lock(inner));
    CHECK(pthread_mutex_unlock(inner));
    CHECK(pthread_mutex_unlock(outer));
}

NOINLINE void* take_ab(void* arg)
{
    (void)arg;
    nest(&lock_a, &lock_b);
    return NULL;
}
NOINLINE void* take_ba(void* arg)
{
    (void)arg;
    nest(&lock_b, &lock_a);
    return NULL;
}
NOINLINE void* take_bc(void* arg)
{
    (void)arg;
    nest(&lock_b, &lock_c);
    return NULL;
}
NOINLINE void* take_ca(void* arg)
{
    (void)arg;
    nest(&lock_c, &lock_a);
    return NULL;
}

NOINLINE void* take_a_trylock_b(void* arg)
{
    (void)arg;
    CHECK(pthread_mutex_lock(&lock_a));
    CHECK(pthread_mutex_trylock(&lock_b));
    CHECK(pthread_mutex_unlock(&lock_b));
    CHECK(pthread_mutex_unlock(&lock_a));
    return NULL;
}

int main(int argc, char** argv)
{
    const char* mode = mode_arg(argc, argv);
    if (strcmp(mode, "abba") == 0) {
        run_on_thread(take_ab, NULL);
        run_on_thread(take_ba, NULL);
    } else if (strcmp(mode, "abbcca") == 0) {
        run_on_thread(take_ab, NULL);
        run_on_thread(take_bc, NULL);
        run_on_thread(take_ca, NULL);
    } else if (strcmp(mode, "ordered") == 0) {
        run_on_thread(take_ab, NULL);
        run_on_thread(take_ab, NULL);
    } else if (strcmp(mode, "trylock") == 0) {
        run_on_thread(take_a_trylock_b, NULL);
        run_on_thread(take_ba, NULL);
    } else {
        fprintf(stderr, "usage: %s abba|abbcca|ordered|trylock\n", argv[0]);
        return 2;
    }
    puts("done");
    return 0;
}
