// The report sink: stderr, a file, or a test's capture.
#include <klock/report.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace klock {

namespace {

struct sink {
    std::mutex lock;
    FILE* file = nullptr; // null: stderr
    bool env_checked = false;
    int captures = 0;
    std::vector<std::string> captured;
};

sink& the_sink()
{
    static sink* s = new sink; // never destroyed: reports may come from threads after exit()
    return *s;
}

std::atomic<std::uint64_t> total_reports{0};

FILE* open_append(const char* path) { return std::fopen(path, "a"); }

} // namespace

bool set_report_file(const char* path)
{
    sink& s = the_sink();
    std::lock_guard<std::mutex> g(s.lock);
    s.env_checked = true;
    FILE* f = nullptr;
    if (path != nullptr && *path != '\0') {
        f = open_append(path);
        if (f == nullptr)
            return false;
    }
    if (s.file != nullptr)
        std::fclose(s.file);
    s.file = f;
    return true;
}

std::uint64_t report_count() noexcept { return total_reports.load(std::memory_order_relaxed); }

report_capture::report_capture()
{
    sink& s = the_sink();
    std::lock_guard<std::mutex> g(s.lock);
    if (s.captures++ == 0)
        s.captured.clear();
}

report_capture::~report_capture()
{
    sink& s = the_sink();
    std::lock_guard<std::mutex> g(s.lock);
    --s.captures;
}

std::vector<std::string> report_capture::reports() const
{
    sink& s = the_sink();
    std::lock_guard<std::mutex> g(s.lock);
    return s.captured;
}

std::size_t report_capture::count() const
{
    sink& s = the_sink();
    std::lock_guard<std::mutex> g(s.lock);
    return s.captured.size();
}

bool report_capture::contains(std::string_view needle) const
{
    for (const std::string& r : reports())
        if (r.find(needle) != std::string::npos)
            return true;
    return false;
}

namespace detail {

void report_emit(std::string text)
{
    total_reports.fetch_add(1, std::memory_order_relaxed);
    if (text.empty() || text.back() != '\n')
        text.push_back('\n');
    sink& s = the_sink();
    std::lock_guard<std::mutex> g(s.lock);
    if (s.captures > 0) {
        s.captured.push_back(std::move(text));
        return;
    }
    if (!s.env_checked) {
        s.env_checked = true;
        if (const char* path = std::getenv("KLOCK_REPORT_FILE"); path != nullptr && *path != '\0')
            s.file = open_append(path);
    }
    FILE* out = s.file != nullptr ? s.file : stderr;
    std::fwrite(text.data(), 1, text.size(), out);
    std::fflush(out);
}

} // namespace detail
} // namespace klock
