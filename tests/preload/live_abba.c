/* A deadlock that really happens: each thread holds one lock and waits for the other. lockdep is
 * told of an acquisition before the real lock blocks, so the report must be written while both
 * threads are stuck. The threads wait with pthread_mutex_timedlock (20 s), and main() exits as
 * soon as the report file (KLOCK_REPORT_FILE, set by klock run --report) shows the report: exit 0
 * if it came within 5 s, 1 if not. A tool that reports only after an acquisition (or never) fails. */
#include "common.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both_hold;

NOINLINE void* hold_then_wait(void* arg)
{
    pthread_mutex_t* first = arg == NULL ? &lock_a : &lock_b;
    pthread_mutex_t* second = arg == NULL ? &lock_b : &lock_a;
    CHECK(pthread_mutex_lock(first));
    pthread_barrier_wait(&both_hold);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 20;
    if (pthread_mutex_timedlock(second, &deadline) == 0)
        CHECK(pthread_mutex_unlock(second));
    CHECK(pthread_mutex_unlock(first));
    return NULL;
}

static int report_seen(const char* path)
{
    FILE* f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[512];
    int seen = 0;
    while (!seen && fgets(line, sizeof line, f) != NULL)
        seen = strstr(line, "possible circular locking dependency detected") != NULL;
    fclose(f);
    return seen;
}

int main(void)
{
    const char* report = getenv("KLOCK_REPORT_FILE");
    if (report == NULL) {
        fputs("live_abba: run me with klock run --report FILE\n", stderr);
        return 2;
    }
    alarm(30); /* never hang the suite */
    CHECK(pthread_barrier_init(&both_hold, NULL, 2));
    pthread_t t1, t2;
    CHECK(pthread_create(&t1, NULL, hold_then_wait, NULL));
    CHECK(pthread_create(&t2, NULL, hold_then_wait, (void*)1));
    for (int i = 0; i < 500; ++i) {
        if (report_seen(report)) {
            puts("reported while deadlocked");
            fflush(stdout);
            _exit(0);
        }
        usleep(10000);
    }
    puts("no report within 5 s");
    fflush(stdout);
    _exit(1);
}
