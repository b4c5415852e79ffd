/* A lock-heavy program for timing `klock run` against the native run, ThreadSanitizer and
 * Helgrind (scripts/bench_run.sh). It stands for the kind of program lockdep is run on: several
 * threads doing short operations on shared structures, each under one or two locks.
 *
 *   usage: lockheavy [THREADS [OPERATIONS_PER_THREAD]]     (default 4, 200000)
 *
 * Each operation picks a key, reads the configuration (a read lock), and updates the key's
 * bucket in a hash table under the bucket's mutex (64 buckets, one lock class); every 16th
 * operation also moves an item from its bucket to an overflow list (bucket lock, overflow lock,
 * statistics lock: three classes nested); every 64th takes the configuration for writing; a
 * spinlock guards an allocation counter; a little arithmetic outside the locks stands for the
 * work a real program does between them. Six lock classes in all, and a fixed lock order, so
 * nothing is reported. It prints a checksum that does not depend on the interleaving,
 * so a run under any tool can be checked, and the elapsed time. */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BUCKETS 64

struct bucket {
    pthread_mutex_t lock;
    uint64_t items;
    uint64_t sum;
    char pad[64 - sizeof(pthread_mutex_t) % 64];
};

static struct bucket table[BUCKETS];
static pthread_rwlock_t config_lock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t overflow_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t overflow_items;
static pthread_spinlock_t alloc_lock;
static uint64_t config_version = 1;
static uint64_t moves, allocations;
static long operations = 200000;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static void* worker(void* arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    uint64_t local = 0;
    for (long i = 0; i < operations; ++i) {
        seed = mix(seed + (uint64_t)i);
        /* "work" between the locks */
        for (int k = 0; k < 8; ++k)
            local += mix(seed + (uint64_t)k) & 0xff;

        pthread_rwlock_rdlock(&config_lock);
        const uint64_t version = config_version;
        pthread_rwlock_unlock(&config_lock);

        struct bucket* b = &table[seed % BUCKETS];
        pthread_mutex_lock(&b->lock);
        b->items += 1;
        b->sum += (seed & 0xffff) + version - version; /* version read, result independent of it */
        pthread_mutex_unlock(&b->lock);

        if ((i & 15) == 0) {
            /* move an item to the overflow list: bucket, then overflow, then stats */
            pthread_mutex_lock(&b->lock);
            if (b->items > 0) {
                pthread_mutex_lock(&overflow_lock);
                b->items -= 1;
                overflow_items += 1;
                pthread_mutex_lock(&stats_lock);
                moves += 1;
                pthread_mutex_unlock(&stats_lock);
                pthread_mutex_unlock(&overflow_lock);
            }
            pthread_mutex_unlock(&b->lock);
        }
        if ((i & 63) == 0) {
            pthread_rwlock_wrlock(&config_lock);
            config_version += 1;
            pthread_rwlock_unlock(&config_lock);
            pthread_spin_lock(&alloc_lock);
            allocations += 1;
            pthread_spin_unlock(&alloc_lock);
        }
    }
    return (void*)(uintptr_t)(local & 1);
}

int main(int argc, char** argv)
{
    const int threads = argc > 1 ? atoi(argv[1]) : 4;
    if (argc > 2)
        operations = atol(argv[2]);
    if (threads < 1 || threads > 256 || operations < 1) {
        fputs("usage: lockheavy [THREADS [OPERATIONS_PER_THREAD]]\n", stderr);
        return 2;
    }
    for (int i = 0; i < BUCKETS; ++i)
        pthread_mutex_init(&table[i].lock, NULL);
    pthread_spin_init(&alloc_lock, PTHREAD_PROCESS_PRIVATE);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t tid[256];
    for (int t = 0; t < threads; ++t)
        pthread_create(&tid[t], NULL, worker, (void*)(uintptr_t)(t + 1));
    for (int t = 0; t < threads; ++t)
        pthread_join(tid[t], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);

    uint64_t items = overflow_items, sum = 0;
    for (int i = 0; i < BUCKETS; ++i) {
        items += table[i].items;
        sum += table[i].sum;
        pthread_mutex_destroy(&table[i].lock);
    }
    const double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    /* items is exact (moves keep the total); sum and allocations depend only on the seeds */
    printf("checksum items=%llu sum=%llu allocations=%llu\n", (unsigned long long)items, (unsigned long long)sum,
        (unsigned long long)allocations);
    fprintf(stderr, "elapsed %.3f s, %.1f ns per operation per thread\n", secs, secs * 1e9 / (double)operations);
    return items == (uint64_t)threads * (uint64_t)operations ? 0 : 1;
}
