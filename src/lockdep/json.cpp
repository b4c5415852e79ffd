// The JSON side of lockdep's reports: string quoting and the sink (a file, one object per line,
// and/or a callback). The file comes from set_json_file() or, if the program never called it,
// from KLOCK_LOCKDEP_JSON in the environment.
#include "internal.hpp"

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace klock::lockdep {

namespace {

struct json_sink {
    std::mutex lock;
    std::FILE* file = nullptr;
    bool env_checked = false;
    json_callback callback = nullptr;
    void* context = nullptr;
};

json_sink& sink()
{
    static json_sink* s = new json_sink; // never destroyed: reports may come during exit
    return *s;
}

} // namespace

namespace detail {

void json_emit(const std::string& json) noexcept
{
    json_sink& s = sink();
    json_callback cb = nullptr;
    void* ctx = nullptr;
    {
        std::lock_guard<std::mutex> g(s.lock);
        if (!s.env_checked) {
            s.env_checked = true;
            if (const char* path = std::getenv("KLOCK_LOCKDEP_JSON"); path != nullptr && *path != '\0')
                s.file = std::fopen(path, "a");
        }
        if (s.file != nullptr) {
            std::fwrite(json.data(), 1, json.size(), s.file);
            std::fputc('\n', s.file);
            std::fflush(s.file);
        }
        cb = s.callback;
        ctx = s.context;
    }
    if (cb != nullptr)
        cb(json, ctx);
}

} // namespace detail

bool set_json_file(const char* path) noexcept
{
    json_sink& s = sink();
    std::lock_guard<std::mutex> g(s.lock);
    s.env_checked = true;
    std::FILE* f = nullptr;
    if (path != nullptr && *path != '\0') {
        f = std::fopen(path, "a");
        if (f == nullptr)
            return false;
    }
    if (s.file != nullptr)
        std::fclose(s.file);
    s.file = f;
    return true;
}

void set_json_callback(json_callback cb, void* context) noexcept
{
    json_sink& s = sink();
    std::lock_guard<std::mutex> g(s.lock);
    s.callback = cb;
    s.context = context;
}

} // namespace klock::lockdep
