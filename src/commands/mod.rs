pub(crate) mod search;
pub(crate) mod up;
