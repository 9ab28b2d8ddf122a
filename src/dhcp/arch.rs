//! Client system architectures (option 93, IANA "Processor Architecture
//! Types"), limited to the ones rackboot can serve.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};

/// An architecture a boot entry can be configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// 0: x86 BIOS.
    Bios,
    /// 6: x86 (IA32) UEFI.
    Ia32Uefi,
    /// 7, and 9 in practice: RFC 4578's table had 7 and 9 swapped and
    /// hypervisors send either.
    X64Uefi,
    /// 10.
    Arm32Uefi,
    /// 11.
    Arm64Uefi,
    /// 15: x86 UEFI HTTP boot.
    Ia32UefiHttp,
    /// 16: x64 UEFI HTTP boot.
    X64UefiHttp,
    /// 19: ARM64 UEFI HTTP boot.
    Arm64UefiHttp,
}

impl Arch {
    pub const ALL: [Arch; 8] = [
        Arch::Bios,
        Arch::Ia32Uefi,
        Arch::X64Uefi,
        Arch::Arm32Uefi,
        Arch::Arm64Uefi,
        Arch::Ia32UefiHttp,
        Arch::X64UefiHttp,
        Arch::Arm64UefiHttp,
    ];

    /// Maps an option 93 value; `None` for architectures we do not serve.
    pub const fn from_code(code: u16) -> Option<Arch> {
        Some(match code {
            0 => Arch::Bios,
            6 => Arch::Ia32Uefi,
            7 | 9 => Arch::X64Uefi,
            10 => Arch::Arm32Uefi,
            11 => Arch::Arm64Uefi,
            15 => Arch::Ia32UefiHttp,
            16 => Arch::X64UefiHttp,
            19 => Arch::Arm64UefiHttp,
            _ => return None,
        })
    }

    /// The canonical option 93 value.
    pub const fn code(self) -> u16 {
        match self {
            Arch::Bios => 0,
            Arch::Ia32Uefi => 6,
            Arch::X64Uefi => 7,
            Arch::Arm32Uefi => 10,
            Arch::Arm64Uefi => 11,
            Arch::Ia32UefiHttp => 15,
            Arch::X64UefiHttp => 16,
            Arch::Arm64UefiHttp => 19,
        }
    }

    /// The configuration name.
    pub const fn name(self) -> &'static str {
        match self {
            Arch::Bios => "bios",
            Arch::Ia32Uefi => "ia32-uefi",
            Arch::X64Uefi => "x64-uefi",
            Arch::Arm32Uefi => "arm32-uefi",
            Arch::Arm64Uefi => "arm64-uefi",
            Arch::Ia32UefiHttp => "ia32-uefi-http",
            Arch::X64UefiHttp => "x64-uefi-http",
            Arch::Arm64UefiHttp => "arm64-uefi-http",
        }
    }

    /// UEFI HTTP boot: answered with a URL, never over TFTP.
    pub const fn is_http(self) -> bool {
        matches!(
            self,
            Arch::Ia32UefiHttp | Arch::X64UefiHttp | Arch::Arm64UefiHttp
        )
    }

    /// The PXE architecture of the same machine: an HTTP boot client may use
    /// the `http_url` of an entry configured for it.
    pub const fn pxe_equivalent(self) -> Arch {
        match self {
            Arch::Ia32UefiHttp => Arch::Ia32Uefi,
            Arch::X64UefiHttp => Arch::X64Uefi,
            Arch::Arm64UefiHttp => Arch::Arm64Uefi,
            other => other,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An architecture name or number that rackboot does not serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown architecture {0:?} (try bios, ia32-uefi, x64-uefi, arm32-uefi, arm64-uefi, x64-uefi-http, ... or an option 93 number)"
)]
pub struct UnknownArch(pub String);

impl FromStr for Arch {
    type Err = UnknownArch;

    /// Accepts our names, dnsmasq's `pxe-service` CSA names (x86PC, BC_EFI,
    /// x86-64_EFI, ...) and option 93 numbers, ignoring case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownArch(s.to_owned());
        if let Ok(code) = s.trim().parse::<u16>() {
            return Arch::from_code(code).ok_or_else(unknown);
        }
        let lower = s.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "bios" | "x86-bios" | "x86pc" => Arch::Bios,
            "ia32-uefi" | "x86-uefi" | "ia32_efi" | "ia32-efi" | "i386-efi" => Arch::Ia32Uefi,
            "x64-uefi" | "x86-64-uefi" | "x86_64-uefi" | "x86-64_efi" | "bc_efi" | "x64-efi" => {
                Arch::X64Uefi
            }
            "arm32-uefi" | "arm32_efi" | "arm32-efi" => Arch::Arm32Uefi,
            "arm64-uefi" | "aarch64-uefi" | "arm64_efi" | "arm64-efi" => Arch::Arm64Uefi,
            "ia32-uefi-http" | "x86-uefi-http" => Arch::Ia32UefiHttp,
            "x64-uefi-http" | "x86-64-uefi-http" => Arch::X64UefiHttp,
            "arm64-uefi-http" | "aarch64-uefi-http" => Arch::Arm64UefiHttp,
            _ => return Err(unknown()),
        })
    }
}

impl<'de> serde::Deserialize<'de> for Arch {
    /// A name (`"x64-uefi"`) or an option 93 number (`7`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArchVisitor;

        impl Visitor<'_> for ArchVisitor {
            type Value = Arch;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an architecture name like \"x64-uefi\" or an option 93 number")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Arch, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Arch, E> {
                u16::try_from(v)
                    .ok()
                    .and_then(Arch::from_code)
                    .ok_or_else(|| E::custom(UnknownArch(v.to_string())))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Arch, E> {
                let v = u64::try_from(v).map_err(|_| E::custom(UnknownArch(v.to_string())))?;
                self.visit_u64(v)
            }
        }

        deserializer.deserialize_any(ArchVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_nine_is_x64() {
        for arch in Arch::ALL {
            assert_eq!(Arch::from_code(arch.code()), Some(arch));
            assert_eq!(arch.name().parse::<Arch>(), Ok(arch));
        }
        assert_eq!(Arch::from_code(9), Some(Arch::X64Uefi));
        assert_eq!(Arch::from_code(2), None);
        assert_eq!(Arch::from_code(0xffff), None);
    }

    #[test]
    fn parses_dnsmasq_names_and_numbers() {
        assert_eq!("x86PC".parse::<Arch>(), Ok(Arch::Bios));
        assert_eq!("BC_EFI".parse::<Arch>(), Ok(Arch::X64Uefi));
        assert_eq!("X86-64_EFI".parse::<Arch>(), Ok(Arch::X64Uefi));
        assert_eq!("ARM64_EFI".parse::<Arch>(), Ok(Arch::Arm64Uefi));
        assert_eq!("11".parse::<Arch>(), Ok(Arch::Arm64Uefi));
        assert!("sparc".parse::<Arch>().is_err());
        assert!("3".parse::<Arch>().is_err());
    }

    #[test]
    fn http_maps_to_its_pxe_equivalent() {
        assert!(Arch::X64UefiHttp.is_http());
        assert_eq!(Arch::X64UefiHttp.pxe_equivalent(), Arch::X64Uefi);
        assert_eq!(Arch::Bios.pxe_equivalent(), Arch::Bios);
    }
}
