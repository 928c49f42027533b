//! Which category (and so which exit code) an error chain falls in: the first typed error in it
//! decides. It lives above the seams whose errors it knows (the engine's, the destinations'), so
//! `error.rs` stays a leaf every module may use.

use crate::error::{Category, Failure};

/// Finds the category of an error chain: the first typed error in it decides.
pub fn categorize(err: &anyhow::Error) -> Category {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.category;
        }
        if cause.downcast_ref::<crate::docker::DockerError>().is_some() {
            return Category::Docker;
        }
        if cause
            .downcast_ref::<crate::destination::DestError>()
            .is_some()
        {
            return Category::Destination;
        }
    }
    Category::Other
}
