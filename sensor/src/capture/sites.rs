//! Probe-site selection.
//!
//! A uprobe on a function's first instruction is usually cheap only if the kernel
//! can emulate that instruction (a `call`, `jmp`, `jcc`, `nop` or `push`);
//! anything else (Debian's `SSL_write` starts with `sub $0x18,%rsp`) is
//! single-stepped out of line, which costs about ten times more. A uretprobe also
//! needs a probe on the first instruction.
//!
//! This module disassembles a function and looks for:
//! - an *entry site*: the first emulated instruction on the straight-line path
//!   from the start, provided the arguments the probe needs are still in
//!   registers there (tracked through register-to-register moves);
//! - a *return site*: for OpenSSL's `SSL_write`/`SSL_read` wrappers, the first
//!   emulated instruction after the call to the library's internal function,
//!   where that call's `int` result is in `eax` and the byte count it wrote is in
//!   a stack slot whose address the wrapper passed as the call's 4th argument.
//!   The callee must be the one the `_ex` sibling calls first: both wrappers hand
//!   the same `(ssl, buf, num, &count)` to OpenSSL's internal read/write.
//!
//! Whenever any condition does not hold, the plan falls back to an entry probe
//! and a uretprobe on the first instruction. Every site is an instruction
//! boundary found by decoding from the function's start.

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Formatter, GasFormatter, Instruction,
    InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register,
};
use sensor_common::{TlsFunction, probe::reg};
use serde::Serialize;

/// How the probes of one function are placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum Plan {
    /// Entry and return probes on emulated instructions; no uretprobe.
    EmulatedSites {
        /// Where the arguments are read.
        entry: EntrySite,
        /// Where the result and byte count are read.
        #[serde(rename = "return")]
        ret: ReturnSite,
    },
    /// Go: an entry probe and a probe on every `RET` (uretprobes corrupt Go
    /// stacks, which the runtime moves and inspects).
    GoReturnSites {
        /// Offset of the entry probe from the function's start.
        entry: u64,
        /// The entry instruction, as text.
        entry_insn: String,
        /// Offsets of the function's `RET` instructions.
        rets: Vec<u64>,
    },
    /// Entry probe and uretprobe on the first instruction.
    EntryUretprobe {
        /// The first instruction, as text.
        first_insn: String,
        /// Whether the kernel emulates it (cheap) or single-steps it.
        emulated: bool,
        /// Why no emulated sites were used.
        reason: String,
    },
}

impl Plan {
    /// Short name for logs and `telltale targets`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::EmulatedSites { .. } => "emulated-sites",
            Self::GoReturnSites { .. } => "go-return-sites",
            Self::EntryUretprobe { .. } => "entry+uretprobe",
        }
    }

    /// One line describing the placement.
    pub fn describe(&self) -> String {
        match self {
            Self::EmulatedSites { entry, ret } => format!(
                "emulated-sites: entry +{:#x} `{}` (ssl in {}, buf in {}), return +{:#x} `{}` \
                 (result in {}, count at [rsp+{:#x}])",
                entry.offset,
                entry.insn,
                reg_name(entry.conn),
                reg_name(entry.buf),
                ret.offset,
                ret.insn,
                reg_name(ret.result),
                ret.count_slot
            ),
            Self::GoReturnSites {
                entry,
                entry_insn,
                rets,
            } => format!(
                "go-return-sites: entry +{entry:#x} `{entry_insn}` (conn in rax, buf in rbx, \
                 goroutine in r14), {} return site(s) at {}",
                rets.len(),
                rets.iter()
                    .map(|r| format!("+{r:#x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Self::EntryUretprobe {
                first_insn,
                emulated,
                reason,
            } => format!(
                "entry+uretprobe at +0x0 `{first_insn}` ({}): {reason}",
                if *emulated {
                    "emulated"
                } else {
                    "single-stepped"
                }
            ),
        }
    }
}

/// An entry site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntrySite {
    /// Offset from the function's start.
    pub offset: u64,
    /// The instruction, as text.
    pub insn: String,
    /// Register holding the `SSL *`.
    pub conn: u8,
    /// Register holding the buffer.
    pub buf: u8,
    /// Register holding the `size_t *` out-argument (`_ex` only).
    pub len_out: u8,
    /// Register holding the byte count (the third argument), or
    /// [`sensor_common::probe::NO_REG`]: a held write needs it.
    pub num: u8,
}

/// A return site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReturnSite {
    /// Offset from the function's start.
    pub offset: u64,
    /// The instruction, as text.
    pub insn: String,
    /// Register holding the internal call's `int` result.
    pub result: u8,
    /// `rsp`-relative offset of the `size_t` byte count.
    pub count_slot: u16,
}

/// Longest prefix of a function that is analysed.
const MAX_INSNS: usize = 64;

/// Decodes the straight-line start of a function at `vaddr` (its bytes in
/// `code`), stopping at the first undecodable instruction.
fn decode(code: &[u8], vaddr: u64) -> Vec<Instruction> {
    let mut d = Decoder::with_ip(64, code, vaddr, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() && out.len() < MAX_INSNS {
        let ins = d.decode();
        if ins.is_invalid() {
            break;
        }
        out.push(ins);
    }
    out
}

fn text(ins: &Instruction) -> String {
    let mut f = GasFormatter::new();
    let mut s = String::new();
    f.format(ins, &mut s);
    s
}

/// Whether Linux's x86 uprobe code emulates `ins` instead of single-stepping it
/// (arch/x86/kernel/uprobes.c: relative call/jmp/jcc, `nop`, `push reg`).
pub fn is_emulated(ins: &Instruction) -> bool {
    if ins.has_lock_prefix() || ins.has_rep_prefix() || ins.has_repne_prefix() {
        return false;
    }
    match ins.code() {
        Code::Call_rel32_64
        | Code::Jmp_rel32_64
        | Code::Jmp_rel8_64
        | Code::Nopd
        | Code::Nopq
        | Code::Push_r64 => true,
        _ => ins.is_jcc_short_or_near(),
    }
}

/// Our register number for a 64-bit GPR (or any of its sub-registers).
fn gpr(r: Register) -> Option<u8> {
    let full = r.full_register();
    const ORDER: [Register; 16] = [
        Register::RAX,
        Register::RCX,
        Register::RDX,
        Register::RBX,
        Register::RSP,
        Register::RBP,
        Register::RSI,
        Register::RDI,
        Register::R8,
        Register::R9,
        Register::R10,
        Register::R11,
        Register::R12,
        Register::R13,
        Register::R14,
        Register::R15,
    ];
    ORDER.iter().position(|&x| x == full).map(|i| i as u8)
}

/// Name of one of our register numbers.
pub fn reg_name(r: u8) -> &'static str {
    const NAMES: [&str; 16] = [
        "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15",
    ];
    NAMES.get(r as usize).copied().unwrap_or("?")
}

/// Bit set of the registers `ins` writes (any width: 32-bit writes clear the
/// upper half, 8/16-bit writes change part of the value).
fn written(factory: &mut InstructionInfoFactory, ins: &Instruction) -> u32 {
    let info = factory.info(ins);
    let mut set = 0u32;
    for u in info.used_registers() {
        let writes = matches!(
            u.access(),
            OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
        );
        if writes && let Some(g) = gpr(u.register()) {
            set |= 1 << g;
        }
    }
    set
}

/// `mov %src,%dst` between full 64-bit registers.
fn reg_copy(ins: &Instruction) -> Option<(u8, u8)> {
    if !matches!(ins.code(), Code::Mov_r64_rm64 | Code::Mov_rm64_r64)
        || ins.op0_kind() != OpKind::Register
        || ins.op1_kind() != OpKind::Register
    {
        return None;
    }
    Some((gpr(ins.op1_register())?, gpr(ins.op0_register())?))
}

/// Index of the entry site in `insns` and where each argument lives there.
/// `need` lists the argument numbers (0 = `rdi`, 1 = `rsi`, 3 = `rcx`) the probe
/// reads.
fn entry_site(insns: &[Instruction], need: &[usize]) -> Option<(usize, [u32; 4])> {
    let mut factory = InstructionInfoFactory::new();
    let mut loc: [u32; 4] = [1 << reg::RDI, 1 << reg::RSI, 1 << reg::RDX, 1 << reg::RCX];
    for (i, ins) in insns.iter().enumerate() {
        if is_emulated(ins) {
            return need.iter().all(|&a| loc[a] != 0).then_some((i, loc));
        }
        if ins.flow_control() != FlowControl::Next {
            return None;
        }
        let w = written(&mut factory, ins);
        for l in &mut loc {
            *l &= !w;
        }
        if let Some((src, dst)) = reg_copy(ins) {
            for l in &mut loc {
                if *l & (1 << src) != 0 {
                    *l |= 1 << dst;
                }
            }
        }
    }
    None
}

fn lowest(set: u32) -> u8 {
    set.trailing_zeros() as u8
}

/// The target of the first direct call on the straight-line path from the start.
pub fn first_call_target(code: &[u8], vaddr: u64) -> Option<u64> {
    for ins in decode(code, vaddr) {
        if ins.code() == Code::Call_rel32_64 {
            return Some(ins.near_branch_target());
        }
        if ins.flow_control() != FlowControl::Next {
            return None;
        }
    }
    None
}

/// The return site after the entry site at `entry`, if the wrapper has the
/// shape described in the module documentation.
fn return_site(insns: &[Instruction], entry: usize, callee: u64) -> Option<(usize, u16)> {
    let mut factory = InstructionInfoFactory::new();
    // The entry instruction must fall through without touching the stack.
    let e = insns.get(entry)?;
    if !(e.is_jcc_short_or_near() || matches!(e.code(), Code::Nopd | Code::Nopq)) {
        return None;
    }
    let mut slot: Option<i64> = None;
    let mut call = None;
    for (i, ins) in insns.iter().enumerate().skip(entry + 1) {
        if ins.code() == Code::Call_rel32_64 {
            if ins.near_branch_target() != callee {
                return None;
            }
            call = Some(i);
            break;
        }
        if ins.flow_control() != FlowControl::Next {
            return None;
        }
        let w = written(&mut factory, ins);
        if w & (1 << reg::RSP) != 0 {
            return None;
        }
        if w & (1 << reg::RCX) != 0 {
            slot = rsp_address_into_rcx(ins);
        }
    }
    let call = call?;
    let slot = u16::try_from(slot?).ok()?;
    for (i, ins) in insns.iter().enumerate().skip(call + 1) {
        if is_emulated(ins) {
            return ins.is_jcc_short_or_near().then_some((i, slot));
        }
        if ins.flow_control() != FlowControl::Next {
            return None;
        }
        let w = written(&mut factory, ins);
        if w & ((1 << reg::RAX) | (1 << reg::RSP)) != 0 {
            return None;
        }
    }
    None
}

/// `mov %rsp,%rcx` → 0; `lea d(%rsp),%rcx` → d; anything else → None.
fn rsp_address_into_rcx(ins: &Instruction) -> Option<i64> {
    if ins.op0_kind() != OpKind::Register || ins.op0_register() != Register::RCX {
        return None;
    }
    if let Some((src, _)) = reg_copy(ins) {
        return (src == reg::RSP).then_some(0);
    }
    if ins.mnemonic() == Mnemonic::Lea
        && ins.op1_kind() == OpKind::Memory
        && ins.memory_base() == Register::RSP
        && ins.memory_index() == Register::None
    {
        return Some(ins.memory_displacement64() as i64);
    }
    None
}

/// The plan of a function probed at its first instruction with a uretprobe,
/// for `reason`.
pub fn entry_uretprobe(code: &[u8], vaddr: u64, reason: &str) -> Plan {
    let mut d = Decoder::with_ip(64, code, vaddr, DecoderOptions::NONE);
    let first = d
        .can_decode()
        .then(|| d.decode())
        .filter(|i| !i.is_invalid());
    let (first_insn, emulated) = first
        .map(|i| (text(&i), is_emulated(&i)))
        .unwrap_or_else(|| ("(undecodable)".to_owned(), false));
    Plan::EntryUretprobe {
        first_insn,
        emulated,
        reason: reason.to_owned(),
    }
}

/// Plans the probes of `function`, whose code (from its first byte) is `code` at
/// virtual address `vaddr`. `sibling_callee` is the first call target of the
/// function's `_ex` sibling, when known.
pub fn plan(function: TlsFunction, code: &[u8], vaddr: u64, sibling_callee: Option<u64>) -> Plan {
    let insns = decode(code, vaddr);
    let fallback = |reason: &str| entry_uretprobe(code, vaddr, reason);
    if function.is_ex() {
        return fallback("the _ex wrappers have no emulated instruction after their call");
    }
    let Some(callee) = sibling_callee else {
        return fallback("no _ex sibling to confirm the internal call");
    };
    let Some((e, loc)) = entry_site(&insns, &[0, 1]) else {
        return fallback("no emulated instruction with the arguments still in registers");
    };
    let Some((r, slot)) = return_site(&insns, e, callee) else {
        return fallback("no recognisable return site after the internal call");
    };
    Plan::EmulatedSites {
        entry: EntrySite {
            offset: insns[e].ip() - vaddr,
            insn: text(&insns[e]),
            conn: lowest(loc[0]),
            buf: lowest(loc[1]),
            len_out: lowest(loc[3]),
            num: if loc[2] == 0 {
                sensor_common::probe::NO_REG
            } else {
                lowest(loc[2])
            },
        },
        ret: ReturnSite {
            offset: insns[r].ip() - vaddr,
            insn: text(&insns[r]),
            result: reg::RAX,
            count_slot: slot,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian 12's OpenSSL 3.0 `SSL_write` (bytes as in libssl.so.3).
    const DEBIAN_SSL_WRITE: &[u8] = &[
        0x48, 0x83, 0xec, 0x18, // sub $0x18,%rsp
        0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0x00, 0x00, 0x00, // mov %fs:0x28,%rax
        0x48, 0x89, 0x44, 0x24, 0x08, // mov %rax,0x8(%rsp)
        0x31, 0xc0, // xor %eax,%eax
        0x85, 0xd2, // test %edx,%edx
        0x78, 0x2f, // js +0x2f
        0x48, 0x89, 0xe1, // mov %rsp,%rcx
        0x48, 0x63, 0xd2, // movslq %edx,%rdx
        0xe8, 0xfd, 0xfb, 0xff, 0xff, // call -0x403
        0x85, 0xc0, // test %eax,%eax
        0x7e, 0x03, // jle +3
        0x8b, 0x04, 0x24, // mov (%rsp),%eax
        0xc3, // ret (shortened)
    ];
    const VADDR: u64 = 0x35980;
    const CALLEE: u64 = 0x35980 + 0x23 - 0x403;

    #[test]
    fn debian_ssl_write_gets_emulated_sites() {
        let p = plan(TlsFunction::SslWrite, DEBIAN_SSL_WRITE, VADDR, Some(CALLEE));
        let Plan::EmulatedSites { entry, ret } = &p else {
            panic!("{}", p.describe());
        };
        assert_eq!(
            (entry.offset, entry.conn, entry.buf),
            (0x16, reg::RDI, reg::RSI)
        );
        // `test %edx,%edx` reads the count; nothing before the site writes rdx.
        assert_eq!(entry.num, reg::RDX);
        assert!(entry.insn.starts_with("js"), "{}", entry.insn);
        assert_eq!(
            (ret.offset, ret.result, ret.count_slot),
            (0x25, reg::RAX, 0)
        );
        assert!(ret.insn.starts_with("jle"), "{}", ret.insn);
    }

    #[test]
    fn another_callee_or_no_sibling_falls_back() {
        let p = plan(
            TlsFunction::SslWrite,
            DEBIAN_SSL_WRITE,
            VADDR,
            Some(CALLEE + 16),
        );
        assert_eq!(p.name(), "entry+uretprobe");
        let p = plan(TlsFunction::SslWrite, DEBIAN_SSL_WRITE, VADDR, None);
        assert_eq!(p.name(), "entry+uretprobe");
        let Plan::EntryUretprobe {
            first_insn,
            emulated,
            ..
        } = p
        else {
            panic!("fallback");
        };
        assert!(first_insn.starts_with("sub"), "{first_insn}");
        assert!(!emulated);
    }

    #[test]
    fn a_clobbered_argument_refuses_the_site() {
        // xor %esi,%esi before the first jcc: the buffer is gone.
        let mut code = DEBIAN_SSL_WRITE.to_vec();
        code[18] = 0x31;
        code[19] = 0xf6;
        let p = plan(TlsFunction::SslWrite, &code, VADDR, Some(CALLEE));
        assert_eq!(p.name(), "entry+uretprobe", "{}", p.describe());
    }

    #[test]
    fn moved_arguments_are_followed() {
        // mov %rsi,%r14 ; xor %esi,%esi ; js → buf is in r14 at the site.
        let code = [0x49, 0x89, 0xf6, 0x31, 0xf6, 0x78, 0x00];
        let insns = decode(&code, 0x1000);
        let (i, loc) = entry_site(&insns, &[0, 1]).expect("site");
        assert_eq!(i, 2);
        assert_eq!(lowest(loc[1]), 14);
        assert_eq!(lowest(loc[0]), reg::RDI);
    }

    #[test]
    fn the_count_slot_must_be_passed_in_rcx() {
        // Replace `mov %rsp,%rcx` by `mov %rax,%rcx`.
        let mut code = DEBIAN_SSL_WRITE.to_vec();
        code[25] = 0x89;
        code[26] = 0xc1;
        let p = plan(TlsFunction::SslWrite, &code, VADDR, Some(CALLEE));
        assert_eq!(p.name(), "entry+uretprobe", "{}", p.describe());
    }

    #[test]
    fn emulated_instruction_classes() {
        let one = |b: &[u8]| decode(b, 0).into_iter().next().expect("decodes");
        assert!(is_emulated(&one(&[0x55]))); // push %rbp
        assert!(is_emulated(&one(&[0x41, 0x54]))); // push %r12
        assert!(is_emulated(&one(&[0x90]))); // nop
        assert!(is_emulated(&one(&[0xe8, 0, 0, 0, 0]))); // call
        assert!(is_emulated(&one(&[0x74, 0x00]))); // je
        assert!(!is_emulated(&one(&[0x48, 0x83, 0xec, 0x18]))); // sub
        assert!(!is_emulated(&one(&[0xf3, 0x0f, 0x1e, 0xfa]))); // endbr64
        assert!(!is_emulated(&one(&[0xc3]))); // ret
        assert!(!is_emulated(&one(&[0xff, 0xd0]))); // call *%rax
    }

    #[test]
    fn garbage_never_panics() {
        use proptest::prelude::*;
        proptest!(|(bytes in proptest::collection::vec(any::<u8>(), 0..128), ex in any::<bool>())| {
            let f = if ex { TlsFunction::SslReadEx } else { TlsFunction::SslRead };
            let _ = plan(f, &bytes, 0x1000, first_call_target(&bytes, 0x1000));
            let _ = plan(TlsFunction::SslWrite, &bytes, 0x1000, Some(0x1000));
        });
    }
}
