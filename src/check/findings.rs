//! What the boot loader checks report: one [`Finding`] per problem, naming
//! the file and line it comes from and saying what to do about it.

use std::fmt;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    /// Something boots, but perhaps not what was meant.
    Warning,
    /// A machine will fail to boot.
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// One line of `rackboot check`'s output about a boot loader's files:
/// `error: pxelinux.cfg/default:5: kernel vmlinuz not found ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    /// Path under the root of the file the finding is about, if any.
    pub file: Option<String>,
    /// 1-based line in `file`.
    pub line: Option<usize>,
    /// What is wrong and the fix.
    pub message: String,
}

impl Finding {
    /// A finding about `file` as a whole (a directory, a missing file).
    pub fn about(level: Level, file: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding {
            level,
            file: Some(file.into()),
            line: None,
            message: message.into(),
        }
    }

    /// A finding about one line of a configuration file.
    pub fn at(level: Level, place: &Place<'_>, message: impl Into<String>) -> Finding {
        Finding {
            level,
            file: Some(place.file.to_owned()),
            line: Some(place.line),
            message: message.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.level.as_str())?;
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
            if let Some(line) = self.line {
                write!(f, "{line}:")?;
            }
            f.write_str(" ")?;
        }
        f.write_str(&self.message)
    }
}

/// A line of a configuration file under the root.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub file: &'a str,
    pub line: usize,
}

/// The findings so far, each kept once: a file included by several
/// configurations is checked for each but reported once.
#[derive(Debug, Default)]
pub struct Findings {
    list: Vec<Finding>,
}

impl Findings {
    pub fn push(&mut self, finding: Finding) {
        if !self.list.contains(&finding) {
            self.list.push(finding);
        }
    }

    pub fn into_vec(self) -> Vec<Finding> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_file_and_line() {
        let place = Place {
            file: "pxelinux.cfg/default",
            line: 5,
        };
        let f = Finding::at(Level::Error, &place, "kernel x not found");
        assert_eq!(
            f.to_string(),
            "error: pxelinux.cfg/default:5: kernel x not found"
        );
        let f = Finding::about(Level::Warning, "pxlinux.cfg", "rename it");
        assert_eq!(f.to_string(), "warning: pxlinux.cfg: rename it");
    }
}
