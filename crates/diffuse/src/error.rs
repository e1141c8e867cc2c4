//! The library's error type: every bad input ends here with a one-line cause.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data: {0}")]
    Data(String),
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("config: {0}")]
    Config(String),
    #[error("image {path}: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error(transparent)]
    Math(#[from] diffuse_math::MathError),
    #[error("non-finite loss ({value}) at step {step}; the last good checkpoint is kept")]
    NonFinite { step: usize, value: f32 },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
