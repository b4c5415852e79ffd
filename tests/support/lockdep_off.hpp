// For tests that misuse a lock on purpose and count the lock's own reports: with lockdep compiled
// into the locks (KLOCK_LOCKDEP), the same misuse also gets lockdep's reports (bad unlock balance,
// recursive locking, held lock freed), which the test does not count. This guard switches lockdep's
// validation off for its scope and restores it (with a fresh graph and held-lock state, so nothing
// the misuse left behind leaks into later tests). Without KLOCK_LOCKDEP it does nothing.
#pragma once

#if KLOCK_LOCKDEP
#include <klock/lockdep.hpp>
#endif

namespace klock::test {

class lockdep_off {
public:
    lockdep_off() noexcept
    {
#if KLOCK_LOCKDEP
        lockdep::set_enabled(false);
#endif
    }
    ~lockdep_off()
    {
#if KLOCK_LOCKDEP
        lockdep::reset(); // forgets the misused locks and switches validation back on
#endif
    }
    lockdep_off(const lockdep_off&) = delete;
    lockdep_off& operator=(const lockdep_off&) = delete;
};

} // namespace klock::test
