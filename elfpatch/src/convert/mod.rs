//! `elfpatch convert`: programs and trees into a relocatable, content-addressed store.

pub mod ldcache;
pub mod search;
