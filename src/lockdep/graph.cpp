// The dependency graph and the checks made when a new chain is seen (kernel: check_deadlock,
// check_prevs_add, check_prev_add, check_noncircular, __bfs).
//
// GRAPH: an edge prev -> next is stored twice, as an entry in prev's locks_after list (cls = next)
// and in next's locks_before list (cls = prev), each with the stack where it was first recorded and
// a set of dependency kinds (SR/ER/SN/EN: was prev shared or exclusive, was next a recursive reader
// or not). A chain only adds edges from the held locks since the last non-trylock, within the same
// irq context; older locks are already connected through that one.
//
// BFS (breadth first, so the reported cycle is a shortest one) walks forwards or backwards from a
// root with a bounded circular queue, marking classes visited with a generation number, and keeps
// parent links for printing the path. It follows strong paths only: after an edge whose kinds are
// all -(*R)-> (into a recursive reader), an edge -(S*)-> (out of a shared hold) does not continue
// the path, since a recursive reader never waits for another reader. Like the kernel, only the
// first entry of each list is queued; its siblings are reached through the list links.
//
// A new edge prev -> next closes a cycle iff a strong path next -> ... -> prev exists and the cycle
// it makes is strong too (hlock_conflict: the new edge starts exclusive, or the path ends -(*N)->).
#include "internal.hpp"

namespace klock::lockdep::detail {

namespace {

constexpr unsigned CQ_SIZE = 1u << 12; // the kernel's CONFIG_LOCKDEP_CIRCULAR_QUEUE_BITS default
constexpr unsigned CQ_MASK = CQ_SIZE - 1;

struct circular_queue {
    lock_list* element[CQ_SIZE];
    unsigned front = 0, rear = 0;

    bool enqueue(lock_list* e)
    {
        if (((rear + 1) & CQ_MASK) == front)
            return false;
        element[rear] = e;
        rear = (rear + 1) & CQ_MASK;
        return true;
    }
    lock_list* dequeue()
    {
        if (front == rear)
            return nullptr;
        lock_list* e = element[front];
        front = (front + 1) & CQ_MASK;
        return e;
    }
    unsigned count() const { return (rear - front) & CQ_MASK; }
};
circular_queue g_cq;

std::uint32_t next_bfs_gen()
{
    graph_state& g = graph();
    if (++g.bfs_gen == 0) {
        for (unsigned i = 0; i < g.nr_classes; ++i)
            class_at(i)->dep_gen_id = 0;
        g.bfs_gen = 1;
    }
    return g.bfs_gen;
}

lock_list* list_head(const lock_class* c, bool forwards) { return forwards ? c->after_head : c->before_head; }

// The next sibling of an expanded entry, in its parent's list.
lock_list* bfs_next(lock_list* lock)
{
    if (lock == nullptr || lock->parent == nullptr)
        return nullptr;
    return lock->next;
}

bfs_result bfs(lock_list* source, void* data, bfs_match_fn match, lock_list** target, bool forwards)
{
    circular_queue& cq = g_cq;
    cq.front = cq.rear = 0;
    const std::uint32_t gen = next_bfs_gen();
    graph_state& g = graph();
    cq.enqueue(source);
    lock_list* lock = nullptr;
    while ((lock = bfs_next(lock)) != nullptr || (lock = cq.dequeue()) != nullptr) {
        if (lock->cls == nullptr)
            return bfs_result::invalid_node;
        if (lock->cls->dep_gen_id == gen)
            continue;
        lock->cls->dep_gen_id = gen;

        if (lock->parent != nullptr) {
            std::uint8_t dep = lock->dep;
            if (lock->parent->only_xr)
                dep &= static_cast<std::uint8_t>(~(DEP_SR | DEP_SN));
            if (dep == 0)
                continue; // not a strong path
            lock->only_xr = (dep & (DEP_SN | DEP_EN)) == 0;
        }

        if (match(lock, data)) {
            if (target != nullptr)
                *target = lock;
            return bfs_result::match;
        }

        bool first = true;
        for (lock_list* e = list_head(lock->cls, forwards); e != nullptr; e = e->next) {
            e->parent = lock;
            if (!first)
                continue;
            first = false;
            if (!cq.enqueue(e))
                return bfs_result::queue_full;
            const unsigned depth = cq.count();
            if (depth > g.counters.max_bfs_queue_depth)
                g.counters.max_bfs_queue_depth = depth;
        }
    }
    return bfs_result::no_match;
}

std::uint8_t calc_dep(const held_lock& prev, const held_lock& next)
{
    return static_cast<std::uint8_t>(1u << ((prev.read == 0 ? 1 : 0) + ((next.read != 2 ? 1 : 0) << 1)));
}

// The same kinds seen from next's locks_before list: the two bits swap roles.
std::uint8_t calc_depb(const held_lock& prev, const held_lock& next)
{
    return static_cast<std::uint8_t>(1u << ((next.read != 2 ? 1 : 0) + ((prev.read == 0 ? 1 : 0) << 1)));
}

// A path next -> ... -> prev found by BFS closes a strong cycle with the new edge prev -> next.
bool hlock_conflict(lock_list* entry, void* data)
{
    const held_lock* h = static_cast<const held_lock*>(data);
    return class_at(h->class_idx) == entry->cls && (h->read == 0 || !entry->only_xr);
}

bool noop_count(lock_list*, void* data)
{
    ++*static_cast<unsigned long*>(data);
    return false;
}

lock_list* alloc_entry(const task_state& ts, const thread_info& ti)
{
    graph_state& g = graph();
    if (g.nr_entries >= g.lim.entries) {
        limit_exhausted_locked(ts, ti, "BUG: MAX_LOCKDEP_ENTRIES too low!");
        return nullptr;
    }
    lock_list* e = &g_entries[g.nr_entries++];
    *e = lock_list{};
    return e;
}

bool add_to_list(const task_state& ts, const thread_info& ti, lock_class* cls, lock_class* links_to, bool after,
    std::uint16_t distance, std::uint8_t dep, std::uint32_t trace)
{
    lock_list* e = alloc_entry(ts, ti);
    if (e == nullptr)
        return false;
    e->cls = cls;
    e->links_to = links_to;
    e->distance = distance;
    e->dep = dep;
    e->trace = trace;
    lock_list*& head = after ? links_to->after_head : links_to->before_head;
    lock_list*& tail = after ? links_to->after_tail : links_to->before_tail;
    if (tail != nullptr)
        tail->next = e;
    else
        head = e;
    tail = e;
    return true;
}

// Would prev -> next close a cycle? Reports it if so. Returns the BFS result.
bfs_result check_noncircular(
    task_state& ts, const thread_info& ti, held_lock& src, held_lock& target, std::uint32_t& trace)
{
    lock_list src_entry;
    bfs_init_root(&src_entry, src);
    ++graph().counters.cyclic_checks;
    lock_list* target_entry = nullptr;
    const bfs_result r = bfs_forwards(&src_entry, &target, hlock_conflict, &target_entry);
    if (static_cast<int>(r) < 0) {
        bfs_bug_locked(ts, ti, r);
        return r;
    }
    if (r == bfs_result::match) {
        if (trace == 0)
            trace = save_trace_locked(ts, ti);
        if (src.class_idx == target.class_idx)
            report_recursive_locked(ts, ti, target, src);
        else
            report_circular_locked(ts, ti, &src_entry, target_entry, src, target);
    }
    return r;
}

// 0: a problem was found (and reported) - no edge; 1: the edge existed; 2: added.
int check_prev_add(task_state& ts, const thread_info& ti, held_lock& prev, held_lock& next, std::uint16_t distance,
    std::uint32_t& trace)
{
    const bfs_result r = check_noncircular(ts, ti, next, prev, trace);
    if (static_cast<int>(r) < 0 || r == bfs_result::match)
        return 0;
    if (!graph().debug_locks)
        return 0;
    if (!check_irq_usage_locked(ts, ti, prev, next))
        return 0;

    lock_class* pc = class_at(prev.class_idx);
    lock_class* nc = class_at(next.class_idx);
    for (lock_list* e = pc->after_head; e != nullptr; e = e->next) {
        if (e->cls != nc)
            continue;
        if (distance == 1)
            e->distance = 1;
        e->dep |= calc_dep(prev, next);
        for (lock_list* b = nc->before_head; b != nullptr; b = b->next) {
            if (b->cls == pc) {
                if (distance == 1)
                    b->distance = 1;
                b->dep |= calc_depb(prev, next);
                return 1;
            }
        }
        return 0; // inconsistent lists: cannot happen
    }

    if (trace == 0) {
        trace = save_trace_locked(ts, ti);
        if (trace == 0)
            return 0;
    }
    if (!add_to_list(ts, ti, nc, pc, true, distance, calc_dep(prev, next), trace))
        return 0;
    if (!add_to_list(ts, ti, pc, nc, false, distance, calc_depb(prev, next), trace))
        return 0;
    return 2;
}

// Add next's dependencies on the relevant held locks: consecutive trylocks from the top down and
// the first non-trylock below them, stopping at an irq-context boundary.
void check_prevs_add(task_state& ts, const thread_info& ti, held_lock& next)
{
    std::uint32_t trace = 0;
    unsigned depth = ts.depth;
    if (depth == 0)
        return;
    for (;;) {
        const auto distance = static_cast<std::uint16_t>(ts.depth - depth + 1);
        held_lock& h = ts.held_locks[depth - 1];
        if (h.check) {
            check_prev_add(ts, ti, h, next, distance, trace);
            if (!graph().debug_locks)
                return;
            if (!h.trylock)
                break;
        }
        if (--depth == 0)
            break;
        if (ts.held_locks[depth].irq_context != ts.held_locks[depth - 1].irq_context)
            break;
    }
}

// Same class already held? 0: reported, 1: fine, 2: fine because the nest lock is held (then the
// new lock adds no dependencies either).
int check_deadlock(task_state& ts, const thread_info& ti, held_lock& next)
{
    const held_lock* nest = nullptr;
    for (unsigned i = 0; i < ts.depth; ++i) {
        held_lock& prev = ts.held_locks[i];
        if (next.nest_lock != nullptr && prev.instance == next.nest_lock)
            nest = &prev;
        if (prev.class_idx != next.class_idx)
            continue;
        if (next.read == READ_RECURSIVE && prev.read != 0)
            continue; // read-after-read recursion of one class is allowed
        if (nest != nullptr)
            return 2;
        report_recursive_locked(ts, ti, prev, next);
        return 0;
    }
    return 1;
}

} // namespace

void bfs_init_root(lock_list* root, const held_lock& h) noexcept
{
    *root = lock_list{};
    root->cls = class_at(h.class_idx);
    root->only_xr = h.read == READ_RECURSIVE;
}

void bfs_init_rootb(lock_list* root, const held_lock& h) noexcept
{
    *root = lock_list{};
    root->cls = class_at(h.class_idx);
    root->only_xr = h.read != 0;
}

bfs_result bfs_forwards(lock_list* root, void* data, bfs_match_fn match, lock_list** target) noexcept
{
    return bfs(root, data, match, target, true);
}

bfs_result bfs_backwards(lock_list* root, void* data, bfs_match_fn match, lock_list** target) noexcept
{
    return bfs(root, data, match, target, false);
}

int lock_depth(lock_list* e) noexcept
{
    int depth = 0;
    while ((e = e->parent) != nullptr)
        ++depth;
    return depth;
}

unsigned long count_forward_deps(lock_class* c) noexcept
{
    lock_list root;
    root.cls = c;
    unsigned long n = 0;
    bfs_forwards(&root, &n, noop_count, nullptr);
    return n;
}

unsigned long count_backward_deps(lock_class* c) noexcept
{
    lock_list root;
    root.cls = c;
    unsigned long n = 0;
    bfs_backwards(&root, &n, noop_count, nullptr);
    return n;
}

void validate_new_chain_locked(task_state& ts, const thread_info& ti, held_lock& h, bool chain_head) noexcept
{
    const int r = check_deadlock(ts, ti, h);
    if (r == 0 || !graph().debug_locks)
        return;
    if (!chain_head && r != 2)
        check_prevs_add(ts, ti, h);
}

void reset_graph_locked() noexcept
{
    graph_state& g = graph();
    g.nr_entries = 0;
    g.bfs_gen = 0;
    g_cq.front = g_cq.rear = 0;
}

} // namespace klock::lockdep::detail
