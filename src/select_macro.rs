//! The `select!` macro: crossbeam-channel's syntax over [`Select`](crate::Select).

/// Waits on several channel operations at once and runs the arm of the
/// one that completes. A drop-in for `crossbeam_channel::select!`.
///
/// Arms:
/// - `recv(r) -> res => body`: `res` is the `Result<T, RecvError>` of
///   receiving from `r` (a [`Receiver`](crate::Receiver) or a reference to
///   one);
/// - `send(s, msg) -> res => body`: `res` is the `Result<(), SendError<T>>`
///   of sending `msg` (evaluated only if this arm is chosen) on `s`;
/// - `default => body`: runs if no operation is ready now (at most one
///   `default`, last);
/// - `default(timeout) => body`: runs if no operation became ready within
///   `timeout`.
///
/// When several operations are ready, one is chosen at random. A disconnected
/// channel's operation is always ready (it fails at once); switch an arm off
/// with [`never`](crate::never).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmlane::select;
///
/// let (s1, r1) = shmlane::unbounded::<i32>();
/// let (_s2, r2) = shmlane::bounded::<&str>(0);
/// s1.send(7).unwrap();
///
/// select! {
///     recv(r1) -> msg => assert_eq!(msg, Ok(7)),
///     recv(r2) -> msg => panic!("nothing was sent: {msg:?}"),
///     default(Duration::from_secs(1)) => panic!("timed out"),
/// }
/// ```
#[macro_export]
macro_rules! select {
    ($($tokens:tt)*) => {
        $crate::__select_start!(new $($tokens)*)
    };
}

/// Starts parsing with the list of names the arms' handles get.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_start {
    ($ctor:ident $($tokens:tt)*) => {
        $crate::__select_parse!(
            $ctor
            ()
            ()
            (_0 _1 _2 _3 _4 _5 _6 _7 _8 _9 _10 _11 _12 _13 _14 _15 _16 _17 _18 _19 _20 _21 _22
             _23 _24 _25 _26 _27 _28 _29 _30 _31 _32 _33 _34 _35 _36 _37 _38 _39 _40 _41 _42
             _43 _44 _45 _46 _47 _48 _49 _50 _51 _52 _53 _54 _55 _56 _57 _58 _59 _60 _61 _62
             _63)
            ($($tokens)*)
        )
    };
}

/// Parses `select!`'s arms into `(kind name (args) body)` lists, giving
/// each operation arm a name of its own from the list.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_parse {
    // All arms parsed.
    ($ctor:ident ($($arms:tt)*) ($($default:tt)*) ($($names:ident)*) ()) => {
        $crate::__select_emit!($ctor ($($arms)*) ($($default)*))
    };
    // recv arms.
    ($ctor:ident ($($arms:tt)*) $default:tt ($name:ident $($names:ident)*)
     (recv($r:expr $(,)?) -> $res:pat => $body:block, $($rest:tt)*)) => {
        $crate::__select_parse!($ctor ($($arms)* (recv $name ($r) ($res) $body)) $default ($($names)*) ($($rest)*))
    };
    ($ctor:ident ($($arms:tt)*) $default:tt ($name:ident $($names:ident)*)
     (recv($r:expr $(,)?) -> $res:pat => $body:block $($rest:tt)*)) => {
        $crate::__select_parse!($ctor ($($arms)* (recv $name ($r) ($res) $body)) $default ($($names)*) ($($rest)*))
    };
    ($ctor:ident ($($arms:tt)*) $default:tt ($name:ident $($names:ident)*)
     (recv($r:expr $(,)?) -> $res:pat => $body:expr, $($rest:tt)*)) => {
        $crate::__select_parse!($ctor ($($arms)* (recv $name ($r) ($res) $body)) $default ($($names)*) ($($rest)*))
    };
    ($ctor:ident ($($arms:tt)*) $default:tt ($name:ident $($names:ident)*)
     (recv($r:expr $(,)?) -> $res:pat => $body:expr)) => {
        $crate::__select_parse!($ctor ($($arms)* (recv $name ($r) ($res) $body)) $default ($($names)*) ())
    };
    // send arms.
    ($ctor:ident ($($arms:tt)*) $default:tt ($name:ident $($names:ident)*)
     (send($s:expr, $m:expr $(,)?) -> $res:pat => $body:block, $($rest:tt)*)) => {
        $crate::__select_parse!($ctor ($($arms)* (send $name ($s, $m) ($res) $body)) $default ($($names)*) ($($rest)*))
    };
    ($ctor:ident ($($arms:tt)*) $default:tt ($name:ident $($names:ident)*)
     (send($s:expr, $m:expr $(,)?) -> $res:pat => $body:block $($rest:tt)*)) => {
        $crate::__select_parse!($ctor ($($arms)* (send $name ($s, $m) ($res) $body)) $default ($($names)*) ($($rest)*))
    };
    ($ctor:ident ($($arms:tt)*) $default:tt ($name:ident $($names:ident)*)
     (send($s:expr, $m:expr $(,)?) -> $res:pat => $body:expr, $($rest:tt)*)) => {
        $crate::__select_parse!($ctor ($($arms)* (send $name ($s, $m) ($res) $body)) $default ($($names)*) ($($rest)*))
    };
    ($ctor:ident ($($arms:tt)*) $default:tt ($name:ident $($names:ident)*)
     (send($s:expr, $m:expr $(,)?) -> $res:pat => $body:expr)) => {
        $crate::__select_parse!($ctor ($($arms)* (send $name ($s, $m) ($res) $body)) $default ($($names)*) ())
    };
    // default arms (one, the last).
    ($ctor:ident $arms:tt () $names:tt (default() => $($rest:tt)*)) => {
        $crate::__select_parse!($ctor $arms () $names (default => $($rest)*))
    };
    ($ctor:ident $arms:tt () $names:tt (default => $body:block $(,)?)) => {
        $crate::__select_parse!($ctor $arms (now $body) $names ())
    };
    ($ctor:ident $arms:tt () $names:tt (default => $body:expr $(,)?)) => {
        $crate::__select_parse!($ctor $arms (now $body) $names ())
    };
    ($ctor:ident $arms:tt () $names:tt (default($t:expr $(,)?) => $body:block $(,)?)) => {
        $crate::__select_parse!($ctor $arms (timeout ($t) $body) $names ())
    };
    ($ctor:ident $arms:tt () $names:tt (default($t:expr $(,)?) => $body:expr $(,)?)) => {
        $crate::__select_parse!($ctor $arms (timeout ($t) $body) $names ())
    };
    ($ctor:ident $arms:tt $default:tt $names:tt ($($rest:tt)+)) => {
        ::core::compile_error!(concat!(
            "select!: expected `recv(r) -> res => body`, `send(s, msg) -> res => body`, ",
            "`default => body` or `default(timeout) => body` (default last), found: ",
            stringify!($($rest)+)
        ))
    };
}

/// Emits the select of `__select_parse`'s lists: first binds every arm's
/// handle in a nested `match` (a temporary such as `&never()` in a
/// scrutinee lives until the select is over), then builds the select.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_emit {
    ($ctor:ident $arms:tt $default:tt) => {
        $crate::__select_nest!($ctor $arms $arms $default)
    };
}

/// Binds the handles, one `match` per arm.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_nest {
    ($ctor:ident () ($(($kind:ident $name:ident $args:tt $res:tt $body:tt))*) $default:tt) => {{
        #[allow(unused_mut)]
        let mut __sel = $crate::Select::$ctor();
        $( let $name = $crate::__select_add!(__sel $kind $name); )*
        $crate::__select_run!(__sel $default ($(($kind $name $args $res $body))*))
    }};
    ($ctor:ident ((recv $name:ident ($r:expr) $res:tt $body:tt) $($rest:tt)*) $all:tt $default:tt) => {
        match &$r {
            $name => $crate::__select_nest!($ctor ($($rest)*) $all $default),
        }
    };
    ($ctor:ident ((send $name:ident ($s:expr, $m:expr) $res:tt $body:tt) $($rest:tt)*) $all:tt $default:tt) => {
        match &$s {
            $name => $crate::__select_nest!($ctor ($($rest)*) $all $default),
        }
    };
}

/// Adds one arm's operation: `(handle, index)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_add {
    ($sel:ident recv $name:ident) => {{
        #[allow(unused_imports)]
        use $crate::__private::SelectRecv as _;
        // Method syntax: finds the receiver through references and `Deref`.
        let h = $name.__as_select_recv();
        (h, $sel.recv(h))
    }};
    ($sel:ident send $name:ident) => {{
        #[allow(unused_imports)]
        use $crate::__private::SelectSend as _;
        let h = $name.__as_select_send();
        (h, $sel.send(h))
    }};
}

/// Runs the select and the chosen arm.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_run {
    // The value goes through locals, so that no temporary of the select
    // outlives the handles (temporaries of a block's tail expression are
    // dropped after its locals).
    ($sel:ident () $arms:tt) => {{
        let __oper = $sel.select();
        let __out = $crate::__select_dispatch!(__oper $arms);
        __out
    }};
    ($sel:ident (now $body:tt) $arms:tt) => {{
        let __res = $sel.try_select();
        let __out = match __res {
            ::core::result::Result::Ok(__oper) => $crate::__select_dispatch!(__oper $arms),
            ::core::result::Result::Err(_) => $body,
        };
        __out
    }};
    ($sel:ident (timeout ($t:expr) $body:tt) $arms:tt) => {{
        let __res = $sel.select_timeout($t);
        let __out = match __res {
            ::core::result::Result::Ok(__oper) => $crate::__select_dispatch!(__oper $arms),
            ::core::result::Result::Err(_) => $body,
        };
        __out
    }};
}

/// Completes the chosen operation and runs its arm's body.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_dispatch {
    ($oper:ident ()) => {{
        let _ = $oper;
        ::core::unreachable!("select!: an operation with no arm was selected")
    }};
    ($oper:ident ((recv $name:ident ($r:expr) ($res:pat) $body:tt) $($rest:tt)*)) => {
        if $oper.index() == $name.1 {
            let $res = $oper.recv($name.0);
            $body
        } else {
            $crate::__select_dispatch!($oper ($($rest)*))
        }
    };
    ($oper:ident ((send $name:ident ($s:expr, $m:expr) ($res:pat) $body:tt) $($rest:tt)*)) => {
        if $oper.index() == $name.1 {
            let $res = $oper.send($name.0, $m);
            $body
        } else {
            $crate::__select_dispatch!($oper ($($rest)*))
        }
    };
}

/// `select!` that prefers the arms written first when several operations
/// are ready (instead of choosing at random). A drop-in for
/// `crossbeam_channel::select_biased!`.
///
/// # Examples
///
/// ```
/// let (s1, r1) = shmlane::unbounded();
/// let (s2, r2) = shmlane::unbounded();
/// s1.send(1).unwrap();
/// s2.send(2).unwrap();
/// let got = shmlane::select_biased! {
///     recv(r1) -> msg => msg.unwrap(),
///     recv(r2) -> msg => msg.unwrap(),
/// };
/// assert_eq!(got, 1);
/// ```
#[macro_export]
macro_rules! select_biased {
    ($($tokens:tt)*) => {
        $crate::__select_start!(new_biased $($tokens)*)
    };
}

/// The name crossbeam-channel's own test suite reaches `select!` by (its
/// `mpsc` tests build their own macro on it). Not part of the API.
#[doc(hidden)]
#[macro_export]
macro_rules! shmlane_internal {
    ($($tokens:tt)*) => {
        $crate::select!($($tokens)*)
    };
}
