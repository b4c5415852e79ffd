// klock: the Linux kernel's locking subsystem for C++ user space. The umbrella header.
#pragma once

#include <klock/env/env.hpp>
#include <klock/env/os.hpp>
#include <klock/guard.hpp>
#include <klock/lockdep.hpp>
#include <klock/might_sleep.hpp>
#include <klock/mutex.hpp>
#include <klock/preempt.hpp>
#include <klock/report.hpp>
#include <klock/rt_mutex.hpp>
#include <klock/rw_semaphore.hpp>
#include <klock/rwlock.hpp>
#include <klock/spinlock.hpp>
#include <klock/thread_info.hpp>
#include <klock/thread_safety.hpp>
#include <klock/ww_mutex.hpp>
