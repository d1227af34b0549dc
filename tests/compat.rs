//! One test body, compiled and run against crossbeam-channel and against
//! shmlane: moving from one to the other is a change of crate name.

mod with_crossbeam {
    use crossbeam_channel as channel;
    include!("compat/body.rs");
}

mod with_shmlane {
    use shmlane as channel;
    include!("compat/body.rs");
}
