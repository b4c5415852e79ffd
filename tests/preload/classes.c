/* How lock classes are keyed.
 *   array       10,000 mutexes initialised in one loop are one class: taking two of them nested
 *               is "possible recursive locking" (the kernel's verdict for two locks of a class
 *               without a nesting annotation), which a class per lock would never say.
 *   heap_reuse  a struct with two never-initialised mutexes (PTHREAD_MUTEX_INITIALIZER copied in)
 *               is used A->B and freed without pthread_mutex_destroy; a struct allocated at the
 *               same address is used B->A from another place. Different locks: not reported
 *               (free() forgot the old locks).
 *   stack_reuse the same with locks on the stack of two functions called one after the other.
 *   init_reuse  the same with pthread_mutex_init (the init re-keys the lock): not reported. */
#include "common.h"

#define NLOCKS 10000

struct pair {
    pthread_mutex_t first, second;
};

static pthread_mutex_t* many;

NOINLINE void init_all(void)
{
    many = malloc(NLOCKS * sizeof *many);
    for (int i = 0; i < NLOCKS; ++i)
        CHECK(pthread_mutex_init(&many[i], NULL));
}

NOINLINE void hand_over_hand(void)
{
    for (int i = 0; i + 1 < NLOCKS; i += 1000) {
        CHECK(pthread_mutex_lock(&many[i]));
        CHECK(pthread_mutex_lock(&many[i + 1]));
        CHECK(pthread_mutex_unlock(&many[i + 1]));
        CHECK(pthread_mutex_unlock(&many[i]));
    }
}

NOINLINE void in_order(pthread_mutex_t* x, pthread_mutex_t* y)
{
    CHECK(pthread_mutex_lock(x));
    CHECK(pthread_mutex_lock(y));
    CHECK(pthread_mutex_unlock(y));
    CHECK(pthread_mutex_unlock(x));
}

NOINLINE struct pair* make_pair(int init)
{
    struct pair* p = malloc(sizeof *p);
    if (init) {
        CHECK(pthread_mutex_init(&p->first, NULL));
        CHECK(pthread_mutex_init(&p->second, NULL));
    } else {
        const pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
        p->first = fresh;
        p->second = fresh;
    }
    return p;
}

NOINLINE void use_forwards(struct pair* p) { in_order(&p->first, &p->second); }
NOINLINE void use_backwards(struct pair* p) { in_order(&p->second, &p->first); }

NOINLINE void heap_reuse(int init)
{
    struct pair* p = make_pair(init);
    use_forwards(p);
    free(p);
    struct pair* q = make_pair(init);
    if (q != p)
        fputs("note: the allocator did not reuse the address\n", stderr);
    use_backwards(q);
    free(q);
}

NOINLINE void stack_forwards(void)
{
    struct pair p = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};
    in_order(&p.first, &p.second);
}

NOINLINE void stack_backwards(void)
{
    struct pair p = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};
    in_order(&p.second, &p.first);
}

int main(int argc, char** argv)
{
    const char* mode = mode_arg(argc, argv);
    if (strcmp(mode, "array") == 0) {
        init_all();
        hand_over_hand();
    } else if (strcmp(mode, "heap_reuse") == 0) {
        heap_reuse(0);
    } else if (strcmp(mode, "init_reuse") == 0) {
        heap_reuse(1);
    } else if (strcmp(mode, "stack_reuse") == 0) {
        stack_forwards();
        stack_backwards();
    } else {
        fprintf(stderr, "usage: %s array|heap_reuse|stack_reuse|init_reuse\n", argv[0]);
        return 2;
    }
    puts("done");
    return 0;
}
