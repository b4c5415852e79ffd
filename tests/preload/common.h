/* Helpers for the preload test programs (C and C++): run functions on threads one after the
 * other, so that lock orders are recorded without the threads ever overlapping, and bail out with
 * a message on a failed pthread call. Functions that must show up in reports by name are
 * external (the programs are linked with -rdynamic so that dladdr can name them) and noinline. */
#ifndef KLOCK_PRELOAD_TEST_COMMON_H
#define KLOCK_PRELOAD_TEST_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* pthread_cond_clockwait, pthread_rwlockattr_setkind_np */
#endif

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

#define CHECK(call)                                                                                                    \
    do {                                                                                                               \
        int check_rc_ = (call);                                                                                        \
        if (check_rc_ != 0) {                                                                                          \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, strerror(check_rc_));                 \
            exit(3);                                                                                                   \
        }                                                                                                              \
    } while (0)

typedef void* (*thread_fn)(void*);

/* Run fn(arg) on a new thread and wait for it. */
static inline void run_on_thread(thread_fn fn, void* arg)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, fn, arg));
    CHECK(pthread_join(t, NULL));
}

/* argv[1] or "" */
static inline const char* mode_arg(int argc, char** argv) { return argc > 1 ? argv[1] : ""; }

#endif
