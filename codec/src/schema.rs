//! Structural schemas: what an rkyv message type looks like, as text two
//! programs can compare.
//!
//! A segment records the schema of the message type it was created for,
//! and a process that opens it with a type of another structure is
//! refused, with the first difference named. The schema records what
//! decides how an archive is laid out and read: the names of the types
//! a message is made of, their fields' names, order and types, and enum
//! variants with their fields, recursively. It does not record where a
//! type is defined, so the same struct defined in two programs (or in two
//! modules of one) has one schema.
//!
//! [`Schema`] is implemented here for the types rkyv archives out of the
//! box (primitives, `String`, `Vec`, `Option`, `Box`, arrays, tuples,
//! maps, ...; `HashMap` and `HashSet` with the `std` feature) and by `#[derive(shmlane::Message)]` (or, next to rkyv's own
//! derives, `#[derive(shmlane::Schema)]`) for your types.
//!
//! # The canonical text
//!
//! One line per fact, in a fixed order: first `message: TYPE`, then one
//! block per named type reachable from it, depth first, in the order its
//! fields name them, each type once:
//!
//! ```text
//! message: Telemetry
//! struct `Telemetry`: { sensor, readings, status, note }
//! field `Telemetry.sensor`: u16
//! field `Telemetry.readings`: Vec<f32>
//! field `Telemetry.status`: Status
//! field `Telemetry.note`: Option<String>
//! enum `Status`: { Ok, Degraded(_), Failed { reason } }
//! field `Status::Degraded.0`: u32
//! field `Status::Failed.reason`: String
//! ```
//!
//! A tuple struct's shape is `(_, _)` and its fields are numbered
//! (`Meters.0`); a unit struct's shape is `unit`; an enum variant with an
//! explicit discriminant shows it (`Code = 4`). A type's name is its own
//! (no module path) unless it is pinned with `#[shmlane(name = "...")]`;
//! two different types of one name inside one message are told apart as
//! `Point`, `Point#2`, ... in the order they are met. Every line but the
//! shape lines reads `KEY: VALUE`, so the first line that differs between
//! two schemas says where they differ: ``field `Reading.values`: Vec<f32>
//! here, Vec<f64> in the segment``.
//!
//! # Examples
//!
//! ```
//! use shmlane_codec::schema::{self, Describer, Field, Fields, Schema, Shape};
//!
//! // What `#[derive(shmlane::Message)]` writes for
//! // `struct Reading { sensor: String, values: Vec<f32> }`:
//! struct Reading {
//!     sensor: String,
//!     values: Vec<f32>,
//! }
//!
//! impl Schema for Reading {
//!     fn describe(d: &mut Describer) -> String {
//!         d.define::<Self>(
//!             "Reading",
//!             &Shape::Struct(Fields::Named(&[
//!                 Field::new("sensor", <String as Schema>::describe),
//!                 Field::new("values", <Vec<f32> as Schema>::describe),
//!             ])),
//!         )
//!     }
//! }
//!
//! assert_eq!(
//!     schema::canonical::<Reading>(),
//!     "message: Reading\n\
//!      struct `Reading`: { sensor, values }\n\
//!      field `Reading.sensor`: String\n\
//!      field `Reading.values`: Vec<f32>"
//! );
//! assert_eq!(schema::type_expr::<Vec<Reading>>(), "Vec<Reading>");
//! ```

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::ffi::CString;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::any::TypeId;
use core::fmt::Write;

/// A function that describes one type (a [`Schema::describe`]).
pub type Describe = fn(&mut Describer) -> String;

/// A type whose structure can be recorded in a segment header.
///
/// Derive it: `#[derive(shmlane::Message)]` derives rkyv's traits and this
/// one; `#[derive(shmlane::Schema)]` derives only this one, for types that
/// derive rkyv's traits themselves. Implement it by hand only for types
/// with a hand-written `Archive` impl, describing what the archive holds.
///
/// # Examples
///
/// ```
/// use shmlane_codec::schema::{canonical, Describer, Schema};
///
/// /// A type archived by hand as a plain `u64`.
/// struct Nanos(u64);
///
/// impl Schema for Nanos {
///     fn describe(d: &mut Describer) -> String {
///         d.describe::<u64>()
///     }
/// }
///
/// assert_eq!(canonical::<Nanos>(), "message: u64");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no message schema",
    label = "`{Self}` does not implement `Schema`",
    note = "a type of your own derives it with `#[derive(shmlane::Message)]` (in place of \
            rkyv's `Archive`, `Serialize` and `Deserialize`), or with \
            `#[derive(shmlane::Schema)]` next to them; a foreign type needs a newtype"
)]
pub trait Schema: 'static {
    /// Returns the type expression that names `Self` in a schema
    /// (`u32`, `Vec<Order>`, `Order`), first defining with `d` every named
    /// type it is made of.
    fn describe(d: &mut Describer) -> String;
}

/// The canonical schema text of `T` (see the [module docs](self)).
pub fn canonical<T: Schema + ?Sized>() -> String {
    let mut d = Describer::new();
    let root = T::describe(&mut d);
    d.finish(&root)
}

/// The type expression that names `T` in its schema: `Order`,
/// `Vec<f32>`, or a pinned name.
pub fn type_expr<T: Schema + ?Sized>() -> String {
    T::describe(&mut Describer::new())
}

/// Collects the definitions of the named types a schema is made of.
#[derive(Debug, Default)]
pub struct Describer {
    /// Each named type met so far, with the name it was given.
    named: Vec<(TypeId, String)>,
    /// One block of lines per named type, in the order they were met.
    blocks: Vec<Vec<String>>,
}

impl Describer {
    fn new() -> Self {
        Self::default()
    }

    /// The type expression for `T` (its [`Schema::describe`]).
    pub fn describe<T: Schema + ?Sized>(&mut self) -> String {
        T::describe(self)
    }

    /// Defines the named type `T` as `name` with `shape`, once, and returns
    /// the name it is known by in this schema: `name`, or `name#2`, ...
    /// when another type of that name was met first. A type met again (or
    /// recursively, inside its own fields) is only named.
    pub fn define<T: ?Sized + 'static>(&mut self, name: &str, shape: &Shape<'_>) -> String {
        let id = TypeId::of::<T>();
        if let Some((_, known)) = self.named.iter().find(|(t, _)| *t == id) {
            return known.clone();
        }
        let mut given = name.to_owned();
        let mut n = 2;
        while self.named.iter().any(|(_, known)| *known == given) {
            given = format!("{name}#{n}");
            n += 1;
        }
        self.named.push((id, given.clone()));
        // Reserved now, filled below: this type's block comes before the
        // blocks of the types its fields define.
        let block = self.blocks.len();
        self.blocks.push(Vec::new());
        let mut lines = Vec::new();
        match shape {
            Shape::Struct(fields) => {
                lines.push(format!("struct `{given}`: {}", fields.shape()));
                self.fields(&mut lines, &given, fields);
            }
            Shape::Enum(variants) => {
                let mut line = format!("enum `{given}`: {{");
                for (i, v) in variants.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    let _ = write!(line, "{sep}{}", v.name);
                    match v.fields {
                        Fields::Unit => {}
                        Fields::Named(_) => {
                            let _ = write!(line, " {}", v.fields.shape());
                        }
                        Fields::Unnamed(_) => line.push_str(&v.fields.shape()),
                    }
                    if let Some(d) = v.discriminant {
                        let _ = write!(line, " = {d}");
                    }
                }
                line.push_str(if variants.is_empty() { "}" } else { " }" });
                lines.push(line);
                for v in *variants {
                    self.fields(&mut lines, &format!("{given}::{}", v.name), &v.fields);
                }
            }
        }
        self.blocks[block] = lines;
        given
    }

    fn fields(&mut self, lines: &mut Vec<String>, owner: &str, fields: &Fields<'_>) {
        for f in fields.list() {
            let ty = (f.ty)(self);
            let mut line = format!("field `{owner}.{}`: {ty}", f.name);
            if let Some(w) = f.with {
                let _ = write!(line, " with {w}");
            }
            lines.push(line);
        }
    }

    fn finish(self, root: &str) -> String {
        let mut text = format!("message: {root}");
        for line in self.blocks.iter().flatten() {
            text.push('\n');
            text.push_str(line);
        }
        text
    }
}

/// The shape of a named type: what [`Describer::define`] records.
#[derive(Debug, Clone, Copy)]
pub enum Shape<'a> {
    /// A struct and its fields.
    Struct(Fields<'a>),
    /// An enum and its variants, in declaration order.
    Enum(&'a [Variant<'a>]),
}

/// The fields of a struct or an enum variant.
#[derive(Debug, Clone, Copy)]
pub enum Fields<'a> {
    /// `{ a: A, b: B }`.
    Named(&'a [Field]),
    /// `(A, B)`; the fields are named `0`, `1`, ...
    Unnamed(&'a [Field]),
    /// No fields.
    Unit,
}

impl Fields<'_> {
    fn list(&self) -> &[Field] {
        match self {
            Self::Named(f) | Self::Unnamed(f) => f,
            Self::Unit => &[],
        }
    }

    fn shape(&self) -> String {
        match self {
            Self::Named([]) => "{}".to_owned(),
            Self::Named(fields) => {
                let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                format!("{{ {} }}", names.join(", "))
            }
            Self::Unnamed(fields) => {
                let blanks: Vec<&str> = fields.iter().map(|_| "_").collect();
                format!("({})", blanks.join(", "))
            }
            Self::Unit => "unit".to_owned(),
        }
    }
}

/// One field: its name (`"0"`, `"1"`, ... in a tuple) and type.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    name: &'static str,
    ty: Describe,
    with: Option<&'static str>,
}

impl Field {
    /// A field called `name` whose type `ty` describes.
    pub const fn new(name: &'static str, ty: Describe) -> Self {
        Self {
            name,
            ty,
            with: None,
        }
    }

    /// The same field, archived through an rkyv wrapper
    /// (`#[rkyv(with = ...)]`), recorded by name.
    pub const fn with(self, wrapper: &'static str) -> Self {
        Self {
            with: Some(wrapper),
            ..self
        }
    }
}

/// One enum variant.
#[derive(Debug, Clone, Copy)]
pub struct Variant<'a> {
    name: &'static str,
    discriminant: Option<&'static str>,
    fields: Fields<'a>,
}

impl<'a> Variant<'a> {
    /// A variant called `name` with `fields` and, if it has one, its
    /// explicit discriminant as written.
    pub const fn new(
        name: &'static str,
        discriminant: Option<&'static str>,
        fields: Fields<'a>,
    ) -> Self {
        Self {
            name,
            discriminant,
            fields,
        }
    }
}

/// Items the derive's generated code names; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use alloc::string::String;
}

macro_rules! named {
    ($($ty:ty => $name:literal),* $(,)?) => {$(
        impl Schema for $ty {
            fn describe(_: &mut Describer) -> String {
                String::from($name)
            }
        }
    )*};
}

named! {
    u8 => "u8", u16 => "u16", u32 => "u32", u64 => "u64", u128 => "u128", usize => "usize",
    i8 => "i8", i16 => "i16", i32 => "i32", i64 => "i64", i128 => "i128", isize => "isize",
    f32 => "f32", f64 => "f64", bool => "bool", char => "char", () => "()",
    str => "str", String => "String", CString => "CString",
    core::num::NonZeroU8 => "NonZeroU8", core::num::NonZeroU16 => "NonZeroU16",
    core::num::NonZeroU32 => "NonZeroU32", core::num::NonZeroU64 => "NonZeroU64",
    core::num::NonZeroU128 => "NonZeroU128", core::num::NonZeroUsize => "NonZeroUsize",
    core::num::NonZeroI8 => "NonZeroI8", core::num::NonZeroI16 => "NonZeroI16",
    core::num::NonZeroI32 => "NonZeroI32", core::num::NonZeroI64 => "NonZeroI64",
    core::num::NonZeroI128 => "NonZeroI128", core::num::NonZeroIsize => "NonZeroIsize",
    core::time::Duration => "Duration",
    core::marker::PhantomPinned => "PhantomPinned",
    core::ops::RangeFull => "RangeFull",
    core::net::Ipv4Addr => "Ipv4Addr", core::net::Ipv6Addr => "Ipv6Addr",
    core::net::IpAddr => "IpAddr", core::net::SocketAddrV4 => "SocketAddrV4",
    core::net::SocketAddrV6 => "SocketAddrV6", core::net::SocketAddr => "SocketAddr",
}

macro_rules! wrapper {
    ($($name:literal $ty:ident<$($p:ident),+> $(where $($b:ident: $bound:path),+)?;)*) => {$(
        impl<$($p: Schema),+> Schema for $ty<$($p),+> $(where $($b: $bound),+)? {
            fn describe(d: &mut Describer) -> String {
                let args: &[String] = &[$(d.describe::<$p>()),+];
                format!("{}<{}>", $name, args.join(", "))
            }
        }
    )*};
}

use core::mem::ManuallyDrop;
use core::ops::{Bound, Range, RangeFrom, RangeInclusive, RangeTo, RangeToInclusive};

wrapper! {
    "Vec" Vec<T>;
    "VecDeque" VecDeque<T>;
    "Option" Option<T>;
    "Result" Result<T, E>;
    "BTreeMap" BTreeMap<K, V>;
    "BTreeSet" BTreeSet<T>;
    "ManuallyDrop" ManuallyDrop<T>;
    "Range" Range<T>;
    "RangeInclusive" RangeInclusive<T>;
    "RangeFrom" RangeFrom<T>;
    "RangeTo" RangeTo<T>;
    "RangeToInclusive" RangeToInclusive<T>;
    "Bound" Bound<T>;
}

#[cfg(feature = "std")]
impl<K: Schema, V: Schema, S: 'static> Schema for std::collections::HashMap<K, V, S> {
    fn describe(d: &mut Describer) -> String {
        // The hasher is not archived: rkyv's map uses its own.
        format!("HashMap<{}, {}>", d.describe::<K>(), d.describe::<V>())
    }
}

#[cfg(feature = "std")]
impl<T: Schema, S: 'static> Schema for std::collections::HashSet<T, S> {
    fn describe(d: &mut Describer) -> String {
        format!("HashSet<{}>", d.describe::<T>())
    }
}

impl<T: Schema + ?Sized> Schema for Box<T> {
    fn describe(d: &mut Describer) -> String {
        format!("Box<{}>", d.describe::<T>())
    }
}

impl<T: Schema> Schema for [T] {
    fn describe(d: &mut Describer) -> String {
        format!("[{}]", d.describe::<T>())
    }
}

impl<T: Schema, const N: usize> Schema for [T; N] {
    fn describe(d: &mut Describer) -> String {
        format!("[{}; {N}]", d.describe::<T>())
    }
}

impl<T: ?Sized + 'static> Schema for core::marker::PhantomData<T> {
    fn describe(_: &mut Describer) -> String {
        // Zero bytes whatever `T` is: nothing about `T` reaches the archive.
        String::from("PhantomData")
    }
}

macro_rules! tuple {
    ($($p:ident)+) => {
        impl<$($p: Schema),+> Schema for ($($p,)+) {
            fn describe(d: &mut Describer) -> String {
                let parts: &[String] = &[$(d.describe::<$p>()),+];
                if parts.len() == 1 {
                    format!("({},)", parts[0])
                } else {
                    format!("({})", parts.join(", "))
                }
            }
        }
    };
}

tuple!(A);
tuple!(A B);
tuple!(A B C);
tuple!(A B C D);
tuple!(A B C D E);
tuple!(A B C D E F);
tuple!(A B C D E F G);
tuple!(A B C D E F G H);
tuple!(A B C D E F G H I);
tuple!(A B C D E F G H I J);
tuple!(A B C D E F G H I J K);
tuple!(A B C D E F G H I J K L);
tuple!(A B C D E F G H I J K L M);

#[cfg(test)]
mod tests {
    use super::*;

    struct Point;
    impl Schema for Point {
        fn describe(d: &mut Describer) -> String {
            d.define::<Self>(
                "Point",
                &Shape::Struct(Fields::Named(&[
                    Field::new("x", <f32 as Schema>::describe),
                    Field::new("y", <f32 as Schema>::describe),
                ])),
            )
        }
    }

    mod other {
        use super::super::*;
        /// Another type called `Point`.
        pub struct Point;
        impl Schema for Point {
            fn describe(d: &mut Describer) -> String {
                d.define::<Self>(
                    "Point",
                    &Shape::Struct(Fields::Unnamed(&[Field::new(
                        "0",
                        <u8 as Schema>::describe,
                    )])),
                )
            }
        }
    }

    /// A list that holds itself: recursion must end.
    struct Tree;
    impl Schema for Tree {
        fn describe(d: &mut Describer) -> String {
            d.define::<Self>(
                "Tree",
                &Shape::Struct(Fields::Named(&[Field::new(
                    "children",
                    <Vec<Tree> as Schema>::describe,
                )])),
            )
        }
    }

    enum Shape2 {}
    impl Schema for Shape2 {
        fn describe(d: &mut Describer) -> String {
            d.define::<Self>(
                "Shape",
                &Shape::Enum(&[
                    Variant::new("Dot", None, Fields::Unit),
                    Variant::new(
                        "Line",
                        Some("4"),
                        Fields::Unnamed(&[
                            Field::new("0", <Point as Schema>::describe),
                            Field::new("1", <other::Point as Schema>::describe),
                        ]),
                    ),
                    Variant::new(
                        "Poly",
                        None,
                        Fields::Named(&[
                            Field::new("points", <Vec<Point> as Schema>::describe).with("Niche")
                        ]),
                    ),
                ]),
            )
        }
    }

    #[test]
    fn std_types_name_themselves() {
        assert_eq!(type_expr::<u8>(), "u8");
        assert_eq!(type_expr::<Option<Box<str>>>(), "Option<Box<str>>");
        assert_eq!(type_expr::<[u16; 3]>(), "[u16; 3]");
        assert_eq!(type_expr::<Box<[u16]>>(), "Box<[u16]>");
        assert_eq!(type_expr::<(u8,)>(), "(u8,)");
        assert_eq!(type_expr::<(u8, String, ())>(), "(u8, String, ())");
        assert_eq!(
            type_expr::<BTreeMap<String, Result<u8, i8>>>(),
            "BTreeMap<String, Result<u8, i8>>"
        );
        assert_eq!(canonical::<Vec<f32>>(), "message: Vec<f32>");
    }

    #[test]
    fn each_named_type_is_defined_once_in_order_and_namesakes_are_told_apart() {
        assert_eq!(
            canonical::<Shape2>(),
            "message: Shape\n\
             enum `Shape`: { Dot, Line(_, _) = 4, Poly { points } }\n\
             field `Shape::Line.0`: Point\n\
             field `Shape::Line.1`: Point#2\n\
             field `Shape::Poly.points`: Vec<Point> with Niche\n\
             struct `Point`: { x, y }\n\
             field `Point.x`: f32\n\
             field `Point.y`: f32\n\
             struct `Point#2`: (_)\n\
             field `Point#2.0`: u8"
        );
    }

    #[test]
    fn recursive_types_end() {
        assert_eq!(
            canonical::<Tree>(),
            "message: Tree\n\
             struct `Tree`: { children }\n\
             field `Tree.children`: Vec<Tree>"
        );
    }
}
