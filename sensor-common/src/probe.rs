//! How user space tells a probe where its data lives: x86-64 register numbers and
//! the attach-cookie layouts.
//!
//! A probe placed a few instructions into a function (on an instruction the kernel
//! emulates) may find its arguments moved to other registers; the loader computes
//! where they are and passes that in the probe's 64-bit attach cookie. A cookie
//! field holding 0 means "the default" (the System V argument register, or no
//! value), so a zero cookie — what kernels without cookie support deliver — keeps
//! the ABI's meaning.

/// x86-64 general-purpose registers in hardware encoding order.
pub mod reg {
    /// `rax`
    pub const RAX: u8 = 0;
    /// `rcx`
    pub const RCX: u8 = 1;
    /// `rdx`
    pub const RDX: u8 = 2;
    /// `rbx`
    pub const RBX: u8 = 3;
    /// `rsp`
    pub const RSP: u8 = 4;
    /// `rbp`
    pub const RBP: u8 = 5;
    /// `rsi`
    pub const RSI: u8 = 6;
    /// `rdi`
    pub const RDI: u8 = 7;
    /// `r8`; `r9`…`r15` follow.
    pub const R8: u8 = 8;
    /// `r14`: the current goroutine (`g`) under Go's register ABI.
    pub const R14: u8 = 14;
    /// Number of registers.
    pub const COUNT: u8 = 16;
}

const TARGET_MASK: u64 = 0xffff_ffff;
/// Width of a register field in a cookie: register number + 1, 1..=16.
const REG_MASK: u64 = 0x1f;

/// The target id (the library or executable) carried by every cookie.
pub const fn cookie_target(cookie: u64) -> u64 {
    cookie & TARGET_MASK
}

/// Cookie of an entry probe: the target id and the registers holding the
/// connection (`SSL *`), the buffer and, for `_ex` functions, the `size_t *`
/// out-argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryCookie {
    /// Target id (fits 32 bits).
    pub target: u32,
    /// Register holding the `SSL *`.
    pub conn: u8,
    /// Register holding the buffer pointer.
    pub buf: u8,
    /// Register holding the byte-count out-pointer (`_ex` variants).
    pub len_out: u8,
    /// Register holding the byte count a write is asked to send (its third
    /// argument), or [`NO_REG`] when no register holds it at the probe's site.
    pub num: u8,
}

/// A cookie register field's value for "no register holds it".
pub const NO_REG: u8 = 0xff;

/// Cookie field value standing for [`NO_REG`].
const NO_REG_FIELD: u64 = REG_MASK;

impl EntryCookie {
    /// The System V argument registers, as at a function's first instruction.
    pub const fn abi(target: u32) -> Self {
        Self {
            target,
            conn: reg::RDI,
            buf: reg::RSI,
            len_out: reg::RCX,
            num: reg::RDX,
        }
    }

    /// Packs into 64 bits: target in bits 0..32, then 5-bit fields holding
    /// register+1 (so that 0 can mean "the ABI register" and r15 still fits).
    pub const fn encode(self) -> u64 {
        self.target as u64
            | ((self.conn as u64 + 1) & REG_MASK) << 32
            | ((self.buf as u64 + 1) & REG_MASK) << 37
            | ((self.len_out as u64 + 1) & REG_MASK) << 42
            | if self.num == NO_REG {
                NO_REG_FIELD
            } else {
                (self.num as u64 + 1) & REG_MASK
            } << 47
    }

    /// Unpacks; zero fields mean the ABI register.
    pub const fn decode(cookie: u64) -> Self {
        const fn field(cookie: u64, shift: u32, default: u8) -> u8 {
            let v = ((cookie >> shift) & REG_MASK) as u8;
            if v == 0 || v > reg::COUNT {
                default
            } else {
                v - 1
            }
        }
        Self {
            target: cookie as u32,
            conn: field(cookie, 32, reg::RDI),
            buf: field(cookie, 37, reg::RSI),
            len_out: field(cookie, 42, reg::RCX),
            num: if (cookie >> 47) & REG_MASK == NO_REG_FIELD {
                NO_REG
            } else {
                field(cookie, 47, reg::RDX)
            },
        }
    }
}

/// Cookie of a return-site probe: placed after the library's internal
/// read/write call returned, where `result` holds its `int` result (> 0 on
/// success) and the `size_t` byte count sits at `[rsp + count_slot]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReturnCookie {
    /// Target id.
    pub target: u32,
    /// Register holding the internal call's result.
    pub result: u8,
    /// Offset from `rsp` of the byte count.
    pub count_slot: u16,
}

impl ReturnCookie {
    /// Packs into 64 bits: target, then result register+1 (5 bits), then the
    /// slot (16 bits).
    pub const fn encode(self) -> u64 {
        self.target as u64
            | ((self.result as u64 + 1) & REG_MASK) << 32
            | (self.count_slot as u64) << 37
    }

    /// Unpacks. A zero result field (no cookie) decodes as `None`: such a probe
    /// cannot know where its data is and must not guess.
    pub const fn decode(cookie: u64) -> Option<Self> {
        let r = ((cookie >> 32) & REG_MASK) as u8;
        if r == 0 || r > reg::COUNT {
            return None;
        }
        Some(Self {
            target: cookie as u32,
            result: r - 1,
            count_slot: ((cookie >> 37) & 0xffff) as u16,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_cookies_round_trip_and_zero_means_abi() {
        let c = EntryCookie {
            target: 0xdead_beef,
            conn: 13,
            buf: 15,
            len_out: reg::RAX,
            num: reg::R8,
        };
        assert_eq!(EntryCookie::decode(c.encode()), c);
        let unsized_site = EntryCookie { num: NO_REG, ..c };
        assert_eq!(EntryCookie::decode(unsized_site.encode()), unsized_site);
        assert_eq!(EntryCookie::decode(0), EntryCookie::abi(0));
        assert_eq!(cookie_target(c.encode()), 0xdead_beef);
    }

    #[test]
    fn every_register_round_trips() {
        for r in 0..reg::COUNT {
            let c = EntryCookie {
                target: 1,
                conn: r,
                buf: r,
                len_out: r,
                num: r,
            };
            assert_eq!(EntryCookie::decode(c.encode()), c, "register {r}");
            let c = ReturnCookie {
                target: 1,
                result: r,
                count_slot: 0xffff,
            };
            assert_eq!(ReturnCookie::decode(c.encode()), Some(c), "register {r}");
        }
    }

    #[test]
    fn return_cookies_round_trip_and_zero_is_none() {
        let c = ReturnCookie {
            target: 7,
            result: reg::RAX,
            count_slot: 0xfff8,
        };
        assert_eq!(ReturnCookie::decode(c.encode()), Some(c));
        assert_eq!(ReturnCookie::decode(7), None);
    }
}
