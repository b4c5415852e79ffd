/* Processes and libraries.
 *   fork       the parent records A->B, then forks while holding A. The child keeps the parent's
 *              classes and its own held lock: it releases A (no "bad unlock balance"), then takes
 *              B->A, which closes the parent's cycle: reported by the child.
 *   atfork     the pthread_atfork idiom: lock in prepare, unlock in parent and child (the child's
 *              thread has a new id, but it is the owner): not reported.
 *   dlopen     a library loaded with dlopen takes its own lock inside the program's (A -> lib),
 *              the program takes them the other way round: reported; then dlclose.
 *   exec       the program re-executes itself ("exec2"): the preload library comes along and
 *              reports the new process's ABBA. */
#include "common.h"

#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;

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

static void prepare(void) { CHECK(pthread_mutex_lock(&fork_lock)); }
static void release(void) { CHECK(pthread_mutex_unlock(&fork_lock)); }

static int wait_child(pid_t pid)
{
    int status = 0;
    if (waitpid(pid, &status, 0) != pid)
        return 3;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

NOINLINE int fork_holding(void)
{
    run_on_thread(take_ab, NULL);
    CHECK(pthread_mutex_lock(&lock_a));
    pid_t pid = fork();
    if (pid == 0) {
        CHECK(pthread_mutex_unlock(&lock_a));
        nest(&lock_b, &lock_a);
        _exit(0);
    }
    CHECK(pthread_mutex_unlock(&lock_a));
    return wait_child(pid);
}

NOINLINE int fork_atfork(void)
{
    CHECK(pthread_atfork(prepare, release, release));
    pid_t pid = fork();
    if (pid == 0) {
        nest(&lock_a, &lock_b);
        _exit(0);
    }
    return wait_child(pid);
}

NOINLINE int use_library(const char* path)
{
    void* lib = dlopen(path, RTLD_NOW);
    if (lib == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 3;
    }
    void (*lib_lock_inside)(pthread_mutex_t*) = NULL;
    void (*lib_lock_outside)(pthread_mutex_t*) = NULL;
    /* the POSIX way around ISO C's ban on object-to-function pointer casts */
    *(void**)&lib_lock_inside = dlsym(lib, "lib_lock_inside");
    *(void**)&lib_lock_outside = dlsym(lib, "lib_lock_outside");
    if (lib_lock_inside == NULL || lib_lock_outside == NULL)
        return 3;
    lib_lock_inside(&lock_a);  /* A, then the library's lock */
    lib_lock_outside(&lock_a); /* the library's lock, then A */
    return dlclose(lib) == 0 ? 0 : 3;
}

int main(int argc, char** argv)
{
    const char* mode = mode_arg(argc, argv);
    int rc = 0;
    if (strcmp(mode, "fork") == 0) {
        rc = fork_holding();
    } else if (strcmp(mode, "atfork") == 0) {
        rc = fork_atfork();
    } else if (strcmp(mode, "dlopen") == 0 && argc > 2) {
        rc = use_library(argv[2]);
    } else if (strcmp(mode, "exec") == 0) {
        execl("/proc/self/exe", argv[0], "exec2", (char*)NULL);
        return 3;
    } else if (strcmp(mode, "exec2") == 0) {
        run_on_thread(take_ab, NULL);
        run_on_thread(take_ba, NULL);
    } else {
        fprintf(stderr, "usage: %s fork|atfork|dlopen LIB|exec\n", argv[0]);
        return 2;
    }
    if (rc == 0)
        puts("done");
    return rc;
}
