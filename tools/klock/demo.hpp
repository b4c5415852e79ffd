#pragma once

namespace klock::tool {
// `klock demo [--no-rt]`: returns the process exit status.
int run_demo(int argc, char** argv);
} // namespace klock::tool
