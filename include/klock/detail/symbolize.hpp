// Turning a code address into something a person can read: function+offset/size, module, and
// source file:line when the module carries debug information.
//
// Symbols come from the ELF symbol tables (.symtab as well as .dynsym, so static and hidden
// functions get names too) and file:line from DWARF, both through elfutils' libdwfl when klock was
// built with it (KLOCK_HAVE_LIBDW); without it, dladdr() and the dynamic symbol table only.
// Results are cached per address. Symbolizing allocates and takes a lock: it is for printing a
// report, never for a lock's fast path (captured stacks stay raw addresses until then).
#pragma once

#include <cstdint>
#include <string>

namespace klock::detail {

struct symbol_info {
    std::string function;           // demangled; empty when no symbol covers the address
    std::uintptr_t offset = 0;      // from the function's start
    std::uintptr_t size = 0;        // the function's size; 0 when unknown
    std::string module;             // file name of the executable or shared object, no directory
    std::uintptr_t module_offset = 0;
    std::string file;               // source file (last two path components); empty without debug info
    unsigned line = 0;
};

// `return_address`: ip is a return address (as in a captured stack), so look up ip - 1, the call
// instruction, for the line; the printed offset is still ip's, as the kernel prints it.
symbol_info symbolize(std::uintptr_t ip, bool return_address = true);

// The kernel's "function+0xoff/0xsize" ("module+0xoff" without a symbol, "0x..." outside every
// module), followed by " (file:line)" when known.
std::string format_symbol(std::uintptr_t ip, bool return_address = true);

} // namespace klock::detail
