/* A library for process.c's dlopen test: a lock with static storage inside a dlopen()ed object. */
#include <pthread.h>

pthread_mutex_t library_lock = PTHREAD_MUTEX_INITIALIZER;

__attribute__((noinline)) void lib_lock_inside(pthread_mutex_t* outer)
{
    pthread_mutex_lock(outer);
    pthread_mutex_lock(&library_lock);
    pthread_mutex_unlock(&library_lock);
    pthread_mutex_unlock(outer);
}

__attribute__((noinline)) void lib_lock_outside(pthread_mutex_t* inner)
{
    pthread_mutex_lock(&library_lock);
    pthread_mutex_lock(inner);
    pthread_mutex_unlock(inner);
    pthread_mutex_unlock(&library_lock);
}
