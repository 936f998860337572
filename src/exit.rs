//! Process exit codes: one small enum, documented in the README and stable
//! across releases. Nothing else in the crate picks a number.

/// How a promdrop process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done, or (for `check`) the inputs are clean.
    Success,
    /// 1: the metrics were refused (invalid, or inconsistent with the
    /// directory); nothing was changed.
    InvalidInput,
    /// 2: bad command line (clap's own code for usage errors).
    Usage,
    /// 3: an I/O error: a missing, unreadable or unwritable file or directory.
    Io,
    /// 4: the group's lock could not be taken in time (or, for `run
    /// --overlap fail`, another run was in progress).
    LockTimeout,
    /// `run`: the command's own status (128 + N for signal N).
    Code(u8),
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::InvalidInput => 1,
            Self::Usage => 2,
            Self::Io => 3,
            Self::LockTimeout => 4,
            Self::Code(code) => code,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn codes_are_stable() {
        let all = [
            Exit::Success,
            Exit::InvalidInput,
            Exit::Usage,
            Exit::Io,
            Exit::LockTimeout,
        ];
        let codes: Vec<u8> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4]);
    }
}
