//! The first steps of the process: applying our own relocations, then reading the initial
//! stack (arguments, environment, auxiliary vector) the kernel built.

use crate::arch;
use crate::elf::Dyn;

const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_RELAENT: i64 = 9;

/// Written before `_DYNAMIC`'s page is touched ([`relocate_self`]); right after
/// `.dynamic` (`link/layout.ld`).
#[link_section = ".ldcas.first"]
static mut FIRST_WRITE: u8 = 0;

/// Applies ld-cas's own `R_*_RELATIVE` relocations.
///
/// It runs before anything relocated may be touched, so it reads no statics, and uses no
/// panics (a panic location is relocated data) and no slice indexing.
///
/// # Safety
/// `dynamic` must be our own `_DYNAMIC` and `base` our load address, both at run time, and
/// this must run exactly once, before any other Rust code.
#[inline(never)]
pub unsafe fn relocate_self(dynamic: *const Dyn, base: usize) {
    // The first touch of `_DYNAMIC`'s page is a write. Were it the read below, the kernel
    // would map the file's page for it and copy the page at the first write to it: two
    // page faults instead of one. (The static's address is PC-relative, nothing relocated.)
    core::ptr::write_volatile(core::ptr::addr_of_mut!(FIRST_WRITE), 1);
    let (mut rela, mut size, mut ent) = (0usize, 0usize, 24usize);
    let mut d = dynamic;
    // SAFETY: `_DYNAMIC` is a DT_NULL-terminated array in our own image.
    while (*d).d_tag != 0 {
        match (*d).d_tag {
            DT_RELA => rela = (*d).d_val as usize,
            DT_RELASZ => size = (*d).d_val as usize,
            DT_RELAENT => ent = (*d).d_val as usize,
            _ => {}
        }
        d = d.add(1);
    }
    if rela == 0 || ent == 0 {
        return;
    }
    let mut off = 0;
    while off < size {
        let r = (base + rela + off) as *const u64;
        // SAFETY: each Elf64_Rela is (r_offset, r_info, r_addend) inside our image; the
        // target of a RELATIVE relocation is a word of our own writable data.
        let (r_offset, r_info, r_addend) = (*r, *r.add(1), *r.add(2));
        if (r_info & 0xffff_ffff) as u32 == arch::R_RELATIVE {
            *((base as u64 + r_offset) as *mut u64) = (base as u64).wrapping_add(r_addend);
        }
        off += ent;
    }
}

/// `AT_NULL`: ends the auxiliary vector.
pub const AT_NULL: usize = 0;
/// `AT_PHDR`: the program's program headers.
pub const AT_PHDR: usize = 3;
/// `AT_PHNUM`: number of program headers.
pub const AT_PHNUM: usize = 5;
/// `AT_PAGESZ`: the page size.
pub const AT_PAGESZ: usize = 6;
/// `AT_BASE`: the interpreter's load address (0 when run directly).
pub const AT_BASE: usize = 7;
/// `AT_ENTRY`: the program's entry point.
pub const AT_ENTRY: usize = 9;
/// `AT_UID`: the real user.
pub const AT_UID: usize = 11;
/// `AT_EUID`: the effective user.
pub const AT_EUID: usize = 12;
/// `AT_SECURE`: set for setuid/setgid/capability-raising executions.
pub const AT_SECURE: usize = 23;
/// `AT_EXECFN`: the path given to `execve`.
pub const AT_EXECFN: usize = 31;

/// The page size, from `AT_PAGESZ`. Linux always gives it; a value that is not a power of
/// two (0: none given) cannot come from the kernel, and ends the process.
pub fn page_size(stack: &Stack) -> usize {
    let page = stack.aux(AT_PAGESZ);
    if !page.is_power_of_two() {
        crate::out::die(127, |o| {
            o.str("AT_PAGESZ (the page size) is not a power of two");
        });
    }
    page
}

/// The initial process stack, edited in place before the hand-over.
pub struct Stack {
    /// The initial stack pointer (points at `argc`).
    pub sp: *mut usize,
    /// Number of arguments.
    pub argc: usize,
    /// The argument vector.
    pub argv: *mut *const u8,
    /// The environment, NULL-terminated.
    pub envp: *mut *const u8,
    /// The auxiliary vector, `(type, value)` pairs up to `AT_NULL`.
    pub auxv: *mut [usize; 2],
}

impl Stack {
    /// Reads the layout the kernel put at `sp`.
    ///
    /// # Safety
    /// `sp` must be the initial stack pointer of the process.
    pub unsafe fn new(sp: *mut usize) -> Stack {
        // SAFETY: the System V initial stack layout: argc, argv[], NULL, envp[], NULL, auxv.
        let argc = *sp;
        let argv = sp.add(1) as *mut *const u8;
        let envp = argv.add(argc + 1);
        let mut e = envp;
        while !(*e).is_null() {
            e = e.add(1);
        }
        let auxv = e.add(1) as *mut [usize; 2];
        Stack {
            sp,
            argc,
            argv,
            envp,
            auxv,
        }
    }

    /// Argument `i` (without its NUL), if `i < argc`.
    pub fn arg(&self, i: usize) -> Option<&'static [u8]> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: argv holds argc valid NUL-terminated strings that live as long as the process.
        Some(unsafe { crate::out::cstr(*self.argv.add(i)) })
    }

    /// The value of the environment variable `name`, if set.
    pub fn env(&self, name: &[u8]) -> Option<&'static [u8]> {
        let mut e = self.envp;
        // SAFETY: envp is NULL-terminated and its strings, NUL-terminated, live as long as
        // the process. Each string is read only up to its first mismatch with `name=` (a
        // NUL mismatches), so only the matching one is measured.
        unsafe {
            while !(*e).is_null() {
                let s = *e;
                let mut i = 0;
                while i < name.len() && *s.add(i) == name[i] {
                    i += 1;
                }
                if i == name.len() && *s.add(i) == b'=' {
                    return Some(crate::out::cstr(s.add(i + 1)));
                }
                e = e.add(1);
            }
        }
        None
    }

    /// Removes every environment entry whose name starts with `prefix` (all of them, as
    /// glibc's `unsetenv` does for its `UNSECURE_ENVVARS` in secure mode), in place on the
    /// initial stack: the remaining entries move down over the removed ones, and the
    /// auxiliary vector moves down with them, since ld.so finds it right after the
    /// environment's NULL. The strings themselves stay where they are. Returns how many
    /// entries went.
    pub fn remove_env(&mut self, prefix: &[u8]) -> usize {
        // SAFETY: all reads and writes stay inside the initial vector block (envp up to
        // the AT_NULL pair of the auxiliary vector); entries only move down, to slots
        // that were read already. Each string is read only up to its first mismatch with
        // `prefix` (a NUL mismatches).
        unsafe {
            let (mut r, mut w) = (self.envp, self.envp);
            while !(*r).is_null() {
                let s = *r;
                let mut i = 0;
                while i < prefix.len() && *s.add(i) == prefix[i] {
                    i += 1;
                }
                if i < prefix.len() {
                    *w = s;
                    w = w.add(1);
                }
                r = r.add(1);
            }
            let removed = r.offset_from(w) as usize;
            if removed == 0 {
                return 0;
            }
            *w = core::ptr::null();
            let mut a = self.auxv;
            while (*a)[0] != AT_NULL {
                a = a.add(1);
            }
            let pairs = a.offset_from(self.auxv) as usize + 1;
            let to = w.add(1) as *mut [usize; 2];
            core::ptr::copy(self.auxv, to, pairs);
            self.auxv = to;
            removed
        }
    }

    fn aux_slot(&self, key: usize) -> Option<*mut [usize; 2]> {
        let mut a = self.auxv;
        // SAFETY: the auxiliary vector ends with AT_NULL.
        unsafe {
            while (*a)[0] != AT_NULL {
                if (*a)[0] == key {
                    return Some(a);
                }
                a = a.add(1);
            }
        }
        None
    }

    /// The value of auxiliary entry `key` (0 when absent).
    pub fn aux(&self, key: usize) -> usize {
        // SAFETY: the slot points into the auxiliary vector.
        self.aux_slot(key).map(|a| unsafe { (*a)[1] }).unwrap_or(0)
    }

    /// Replaces the value of auxiliary entry `key`, if present.
    pub fn set_aux(&mut self, key: usize, value: usize) {
        if let Some(a) = self.aux_slot(key) {
            // SAFETY: the slot points into the (writable) auxiliary vector.
            unsafe { (*a)[1] = value };
        }
    }

    /// Drops the first `n` arguments the way ld.so does when run as a command. The argument
    /// count moves up by `n` words; when that breaks the ABI's 16-byte stack alignment, the
    /// whole vector block (argc, argv, envp, auxv) moves down one word.
    pub fn shift_args(&mut self, n: usize) {
        if n == 0 || n > self.argc {
            return;
        }
        // SAFETY: all writes stay inside the initial vector block, which ends after the
        // AT_NULL pair of the auxiliary vector; the strings it points to live above it.
        unsafe {
            let mut a = self.auxv;
            while (*a)[0] != AT_NULL {
                a = a.add(1);
            }
            let end = a.add(1) as *mut usize;
            let mut sp = self.sp.add(n);
            *sp = self.argc - n;
            if (sp as usize) & 15 != 0 {
                let words = end.offset_from(sp) as usize;
                core::ptr::copy(sp, sp.sub(1), words);
                sp = sp.sub(1);
            }
            *self = Stack::new(sp);
        }
    }
}
