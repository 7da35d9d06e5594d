pub(crate) mod alert;
pub(crate) mod dash;
pub(crate) mod events;
pub(crate) mod search;
pub(crate) mod up;
