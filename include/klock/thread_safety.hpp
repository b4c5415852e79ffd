// Clang thread-safety analysis attributes (-Wthread-safety).
//
// Every public lock type is a CAPABILITY and every guard a SCOPED_CAPABILITY, so that
// clang can check statically that data marked KLOCK_GUARDED_BY(lock) is touched only with
// the lock held. With other compilers the macros expand to nothing.
#pragma once

#if defined(__clang__)
#define KLOCK_TSA(x) __attribute__((x))
#else
#define KLOCK_TSA(x)
#endif

#define KLOCK_CAPABILITY(name) KLOCK_TSA(capability(name))
#define KLOCK_SCOPED_CAPABILITY KLOCK_TSA(scoped_lockable)
#define KLOCK_GUARDED_BY(x) KLOCK_TSA(guarded_by(x))
#define KLOCK_PT_GUARDED_BY(x) KLOCK_TSA(pt_guarded_by(x))
#define KLOCK_ACQUIRED_BEFORE(...) KLOCK_TSA(acquired_before(__VA_ARGS__))
#define KLOCK_ACQUIRED_AFTER(...) KLOCK_TSA(acquired_after(__VA_ARGS__))
#define KLOCK_REQUIRES(...) KLOCK_TSA(requires_capability(__VA_ARGS__))
#define KLOCK_REQUIRES_SHARED(...) KLOCK_TSA(requires_shared_capability(__VA_ARGS__))
#define KLOCK_ACQUIRE(...) KLOCK_TSA(acquire_capability(__VA_ARGS__))
#define KLOCK_ACQUIRE_SHARED(...) KLOCK_TSA(acquire_shared_capability(__VA_ARGS__))
#define KLOCK_RELEASE(...) KLOCK_TSA(release_capability(__VA_ARGS__))
#define KLOCK_RELEASE_SHARED(...) KLOCK_TSA(release_shared_capability(__VA_ARGS__))
#define KLOCK_RELEASE_GENERIC(...) KLOCK_TSA(release_generic_capability(__VA_ARGS__))
#define KLOCK_TRY_ACQUIRE(...) KLOCK_TSA(try_acquire_capability(__VA_ARGS__))
#define KLOCK_TRY_ACQUIRE_SHARED(...) KLOCK_TSA(try_acquire_shared_capability(__VA_ARGS__))
#define KLOCK_EXCLUDES(...) KLOCK_TSA(locks_excluded(__VA_ARGS__))
#define KLOCK_ASSERT_CAPABILITY(x) KLOCK_TSA(assert_capability(x))
#define KLOCK_RETURN_CAPABILITY(x) KLOCK_TSA(lock_returned(x))
#define KLOCK_NO_THREAD_SAFETY_ANALYSIS KLOCK_TSA(no_thread_safety_analysis)
