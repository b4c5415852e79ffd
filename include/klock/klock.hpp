// klock: the Linux kernel's locking subsystem for C++ user space. The umbrella header.
#pragma once

#include <klock/env/env.hpp>
#include <klock/env/os.hpp>
#include <klock/might_sleep.hpp>
#include <klock/preempt.hpp>
#include <klock/report.hpp>
#include <klock/thread_info.hpp>
#include <klock/thread_safety.hpp>
