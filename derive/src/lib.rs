//! Derive macros for shmlane message types, re-exported by the `shmlane`
//! crate as [`shmlane::Message`](macro@Message) and
//! [`shmlane::Schema`](macro@Schema). Use them through `shmlane`; this
//! crate is an implementation detail.
//!
//! `#[derive(shmlane::Message)]` gives a type what an `Rkyv<T>` channel
//! needs: rkyv's `Archive`, `Serialize` and `Deserialize` (through the
//! rkyv that `shmlane` re-exports, so the program needs no rkyv
//! dependency of its own), and a structural `Schema`, which the segment
//! header records so that a process opening the channel with a type of
//! another structure is refused.
//!
//! How the rkyv impls come about: a derive macro can add items but not
//! change the item it is attached to, so it cannot put rkyv's derives on
//! the type. It emits a hidden twin of the type (same fields, same types)
//! with rkyv's own derives in their `remote` form, which generate the
//! archived type (`ArchivedT`, with its `CheckBytes` impl) and the
//! serialization code for `T`; the `Archive`, `Serialize` and
//! `Deserialize` impls of `T` then hand over to those. No unsafe code is
//! generated here; everything unsafe is rkyv's, as with its own derive.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, ToTokens};
use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{
    parse_macro_input, Attribute, Data, DeriveInput, Error, Fields, LitStr, Path, Result, Type,
};

/// Derives rkyv's `Archive`, `Serialize` and `Deserialize` and shmlane's
/// `Schema`, so the type can travel through `Rkyv<T>` channels.
///
/// Works on structs (named, tuple and unit) and enums whose fields'
/// types implement `Schema` (the primitives, `String`, `Vec`, `Option`,
/// `Box`, arrays, tuples, maps, and types that derive it) and rkyv's
/// traits. The archived type is named `Archived` + the type's name, as
/// with rkyv's derive. Generic types are refused.
///
/// Attributes:
///
/// - `#[shmlane(name = "Name")]` records `Name` as the type's name in its
///   schema instead of its own. Two programs whose types have different
///   names but one structure can pin one name; renaming a type then keeps
///   its channels compatible.
/// - `#[shmlane(crate = path)]` where the `shmlane` crate is known by
///   another name.
/// - `#[rkyv(derive(...))]` and `#[rkyv(attr(...))]` pass derives and
///   attributes on to the archived type, as with rkyv's derive. Other rkyv
///   options (wrappers such as `#[rkyv(with = ...)]`, niches, bounds) are
///   refused: derive rkyv's traits yourself and add
///   [`#[derive(shmlane::Schema)]`](macro@Schema).
///
/// The name `Message` lives in the macro namespace, so it does not clash
/// with the trait `shmlane::ipc::Message`: `use shmlane::Message;` imports
/// only this derive, and both can be imported side by side.
///
/// # Examples
///
/// ```
/// use shmlane::ipc::{Builder, Rkyv};
///
/// #[derive(shmlane::Message, Debug, PartialEq)]
/// #[rkyv(derive(Debug))]
/// struct Reading {
///     sensor: String,
///     values: Vec<f32>,
/// }
///
/// let name = format!("shm:derive-doc-{}", std::process::id());
/// let chan = Builder::new(&name)?.create::<Rkyv<Reading>>()?;
/// let (tx, rx) = (chan.sender()?, chan.receiver()?);
/// tx.send(&Reading { sensor: "t1".into(), values: vec![1.0, 2.0] })?;
/// let got = rx.recv_ref()?;
/// assert_eq!(got.values.as_slice(), [1.0, 2.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[proc_macro_derive(Message, attributes(shmlane, rkyv))]
pub fn derive_message(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input, true)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

/// Derives only shmlane's `Schema`, for types that derive rkyv's
/// `Archive`, `Serialize` and `Deserialize` themselves (to use rkyv
/// options that [`#[derive(shmlane::Message)]`](macro@Message) refuses).
///
/// Takes `#[shmlane(name = "...")]` and `#[shmlane(crate = path)]` as
/// `Message` does. A field archived through a wrapper
/// (`#[rkyv(with = W)]`) is recorded with the wrapper's name (`Vec<u8>
/// with AsBox`); the schema cannot see what the wrapper does, only that it
/// is there.
///
/// # Examples
///
/// ```
/// use shmlane::rkyv::{Archive, Deserialize, Serialize};
///
/// #[derive(Archive, Serialize, Deserialize, shmlane::Schema)]
/// #[rkyv(crate = shmlane::rkyv, compare(PartialEq))]
/// struct Tick {
///     seq: u64,
///     quote: [f64; 2],
/// }
///
/// assert_eq!(
///     shmlane::schema::canonical::<Tick>(),
///     "message: Tick\n\
///      struct `Tick`: { seq, quote }\n\
///      field `Tick.seq`: u64\n\
///      field `Tick.quote`: [f64; 2]"
/// );
/// ```
#[proc_macro_derive(Schema, attributes(shmlane))]
pub fn derive_schema(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input, false)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

/// What `#[shmlane(...)]` on the type says.
struct Options {
    /// The name the schema records (`name = "..."`, or the type's own).
    name: String,
    /// The path of the `shmlane` crate (`crate = ...`, or `::shmlane`).
    krate: Path,
}

fn options(input: &DeriveInput) -> Result<Options> {
    let mut name = None;
    let mut krate = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("shmlane")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().trim().is_empty() || lit.value().contains('\n') {
                    return Err(meta.error("the name must be one line of text, not empty"));
                }
                name = Some(lit.value());
                Ok(())
            } else if meta.path.is_ident("crate") {
                let value = meta.value()?;
                krate = Some(if value.peek(LitStr) {
                    value.parse::<LitStr>()?.parse()?
                } else {
                    value.parse()?
                });
                Ok(())
            } else {
                Err(meta.error("unknown shmlane attribute: use `name = \"...\"` or `crate = path`"))
            }
        })?;
    }
    Ok(Options {
        name: name.unwrap_or_else(|| input.ident.unraw().to_string()),
        krate: krate.unwrap_or_else(|| syn::parse_quote!(::shmlane)),
    })
}

fn expand(input: &DeriveInput, with_rkyv: bool) -> Result<TokenStream> {
    let which = if with_rkyv { "Message" } else { "Schema" };
    if !input.generics.params.is_empty() {
        return Err(Error::new(
            input.generics.span(),
            format!(
                "`#[derive(shmlane::{which})]` does not support generic types: a channel \
                 carries one concrete type, so define one without parameters (a struct \
                 whose fields are the concrete types)"
            ),
        ));
    }
    if let Data::Union(u) = &input.data {
        return Err(Error::new(
            u.union_token.span,
            format!(
                "`#[derive(shmlane::{which})]` does not support unions: rkyv cannot archive them"
            ),
        ));
    }
    if let Data::Enum(e) = &input.data {
        if with_rkyv && e.variants.is_empty() {
            return Err(Error::new(
                e.enum_token.span,
                "`#[derive(shmlane::Message)]` needs at least one variant: rkyv cannot \
                 archive an enum without variants",
            ));
        }
    }
    let opts = options(input)?;
    let schema = schema_impl(input, &opts, !with_rkyv)?;
    if !with_rkyv {
        return Ok(schema);
    }
    let rkyv = rkyv_impls(input, &opts)?;
    Ok(quote! {
        #rkyv
        #schema
    })
}

/// `impl Schema for T`.
fn schema_impl(input: &DeriveInput, opts: &Options, wrappers: bool) -> Result<TokenStream> {
    let Options { name, krate } = opts;
    let ty = &input.ident;
    let s = quote!(#krate::schema);
    let shape = match &input.data {
        Data::Struct(data) => {
            let fields = fields(&data.fields, &s, wrappers)?;
            quote!(#s::Shape::Struct(#fields))
        }
        Data::Enum(data) => {
            let mut variants = Vec::new();
            for v in &data.variants {
                let vname = v.ident.unraw().to_string();
                let disc = match &v.discriminant {
                    Some((_, expr)) => {
                        let text = expr.to_token_stream().to_string();
                        quote!(::core::option::Option::Some(#text))
                    }
                    None => quote!(::core::option::Option::None),
                };
                let fields = fields(&v.fields, &s, wrappers)?;
                variants.push(quote!(#s::Variant::new(#vname, #disc, #fields)));
            }
            quote!(#s::Shape::Enum(&[#(#variants),*]))
        }
        Data::Union(_) => unreachable!("refused in `expand`"),
    };
    Ok(quote! {
        #[automatically_derived]
        impl #s::Schema for #ty {
            fn describe(d: &mut #s::Describer) -> #s::__private::String {
                d.define::<Self>(#name, &#shape)
            }
        }
    })
}

/// A `Fields` value listing `fields` and their types' describers.
fn fields(fields: &Fields, s: &TokenStream, wrappers: bool) -> Result<TokenStream> {
    let mut list = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let name = match &f.ident {
            Some(id) => id.unraw().to_string(),
            None => i.to_string(),
        };
        let ty = &f.ty;
        let mut field = quote!(#s::Field::new(#name, <#ty as #s::Schema>::describe));
        if wrappers {
            if let Some(w) = wrapper(&f.attrs)? {
                field = quote!(#field.with(#w));
            }
        }
        list.push(field);
    }
    Ok(match fields {
        Fields::Named(_) => quote!(#s::Fields::Named(&[#(#list),*])),
        Fields::Unnamed(_) => quote!(#s::Fields::Unnamed(&[#(#list),*])),
        Fields::Unit => quote!(#s::Fields::Unit),
    })
}

/// The name of the wrapper in a field's `#[rkyv(with = W)]`, if any:
/// the last path segment (`AsBox`, `Map<Niche>`), so where it is
/// imported from does not matter.
fn wrapper(attrs: &[Attribute]) -> Result<Option<String>> {
    let mut found: Vec<String> = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("rkyv")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("with") {
                let ty: Type = meta.value()?.parse()?;
                found.push(type_name(&ty));
            } else {
                skip_argument(meta.input)?;
            }
            Ok(())
        })?;
    }
    Ok((!found.is_empty()).then(|| found.join(", ")))
}

fn type_name(ty: &Type) -> String {
    let text = match ty {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .map(ToTokens::to_token_stream)
            .unwrap_or_default(),
        other => other.to_token_stream(),
    };
    text.to_string()
        .replace(" < ", "<")
        .replace(" <", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
}

/// Skips the rest of one `key ...` argument of an attribute (up to the
/// next top-level comma).
fn skip_argument(input: ParseStream) -> Result<()> {
    input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if matches!(&tt, TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

/// rkyv's derives on a hidden twin of the type in their `remote` form,
/// and `Archive`, `Serialize` and `Deserialize` impls for the type that
/// hand over to them.
fn rkyv_impls(input: &DeriveInput, opts: &Options) -> Result<TokenStream> {
    let krate = &opts.krate;
    let rkyv = quote!(#krate::rkyv);
    let ty = &input.ident;
    let vis = &input.vis;
    let plain = ty.unraw();
    let twin = format_ident!("__ShmlaneRemote{}", plain, span = Span::call_site());
    let archived = format_ident!("Archived{}", plain, span = ty.span());
    let resolver = format_ident!("{}Resolver", plain, span = ty.span());

    // Type-level rkyv options that only shape the archived type pass
    // through; the rest would change the archive behind the schema's back.
    let mut passed = Vec::new();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("rkyv")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("derive") || meta.path.is_ident("attr") {
                skip_argument(meta.input)
            } else {
                Err(meta.error(
                    "`#[derive(shmlane::Message)]` passes on only `#[rkyv(derive(...))]` and \
                     `#[rkyv(attr(...))]`; for other rkyv options derive rkyv's traits yourself \
                     and add `#[derive(shmlane::Schema)]`",
                ))
            }
        })?;
        passed.push(attr);
    }
    let refuse_field_attrs = |fields: &Fields| -> Result<()> {
        for f in fields {
            if let Some(attr) = f.attrs.iter().find(|a| a.path().is_ident("rkyv")) {
                return Err(Error::new_spanned(
                    attr,
                    "`#[derive(shmlane::Message)]` does not take rkyv field options (wrappers, \
                     niches, bounds); derive rkyv's traits yourself and add \
                     `#[derive(shmlane::Schema)]`",
                ));
            }
        }
        Ok(())
    };

    // The twin: the same fields, without their attributes; and how to
    // turn it into the type (rkyv's remote `Deserialize` builds the twin,
    // then converts it).
    let (body, from) = match &input.data {
        Data::Struct(data) => {
            refuse_field_attrs(&data.fields)?;
            let body = twin_fields(&data.fields);
            let semi = (!matches!(data.fields, Fields::Named(_))).then(|| quote!(;));
            let build = build(&data.fields, quote!(Self), |i, f| match &f.ident {
                Some(id) => quote!(twin.#id),
                None => {
                    let index = syn::Index::from(i);
                    quote!(twin.#index)
                }
            });
            (quote!(struct #twin #body #semi), build)
        }
        Data::Enum(data) => {
            let mut variants = Vec::new();
            let mut arms = Vec::new();
            for v in &data.variants {
                refuse_field_attrs(&v.fields)?;
                let vname = &v.ident;
                let body = twin_fields(&v.fields);
                let disc = v.discriminant.as_ref().map(|(eq, e)| quote!(#eq #e));
                variants.push(quote!(#vname #body #disc));
                let binding = |i: usize, _: &syn::Field| {
                    let b = format_ident!("__f{}", i);
                    quote!(#b)
                };
                let pattern = build(&v.fields, quote!(#twin::#vname), binding);
                let value = build(&v.fields, quote!(Self::#vname), binding);
                arms.push(quote!(#pattern => #value));
            }
            (
                quote!(enum #twin { #(#variants),* }),
                quote!(match twin { #(#arms),* }),
            )
        }
        Data::Union(_) => unreachable!("refused in `expand`"),
    };

    let with = quote!(#rkyv::with);
    let fallible = quote!(#rkyv::rancor::Fallible);
    Ok(quote! {
        #[doc(hidden)]
        #[allow(dead_code, non_camel_case_types, clippy::all)]
        #[derive(#rkyv::Archive, #rkyv::Serialize, #rkyv::Deserialize)]
        #[rkyv(crate = #rkyv, remote = #ty, archived = #archived, resolver = #resolver)]
        #(#passed)*
        #vis #body

        #[automatically_derived]
        impl ::core::convert::From<#twin> for #ty {
            #[inline]
            fn from(twin: #twin) -> Self {
                #from
            }
        }

        #[automatically_derived]
        impl #rkyv::Archive for #ty {
            type Archived = <#twin as #with::ArchiveWith<#ty>>::Archived;
            type Resolver = <#twin as #with::ArchiveWith<#ty>>::Resolver;

            #[inline]
            fn resolve(&self, resolver: Self::Resolver, out: #rkyv::Place<Self::Archived>) {
                <#twin as #with::ArchiveWith<#ty>>::resolve_with(self, resolver, out)
            }
        }

        #[automatically_derived]
        impl<__S: #fallible + ?Sized> #rkyv::Serialize<__S> for #ty
        where
            #twin: #with::SerializeWith<#ty, __S>,
        {
            #[inline]
            fn serialize(
                &self,
                serializer: &mut __S,
            ) -> ::core::result::Result<Self::Resolver, <__S as #fallible>::Error> {
                <#twin as #with::SerializeWith<#ty, __S>>::serialize_with(self, serializer)
            }
        }

        #[automatically_derived]
        impl<__D: #fallible + ?Sized> #rkyv::Deserialize<#ty, __D> for #archived
        where
            #twin: #with::DeserializeWith<#archived, #ty, __D>,
        {
            #[inline]
            fn deserialize(
                &self,
                deserializer: &mut __D,
            ) -> ::core::result::Result<#ty, <__D as #fallible>::Error> {
                <#twin as #with::DeserializeWith<#archived, #ty, __D>>::deserialize_with(
                    self,
                    deserializer,
                )
            }
        }
    })
}

/// The twin's fields: names, visibility and types, no attributes.
fn twin_fields(fields: &Fields) -> TokenStream {
    let list = fields.iter().map(|f| {
        let (vis, ty) = (&f.vis, &f.ty);
        match &f.ident {
            Some(id) => quote!(#vis #id: #ty),
            None => quote!(#vis #ty),
        }
    });
    match fields {
        Fields::Named(_) => quote!({ #(#list),* }),
        Fields::Unnamed(_) => quote!(( #(#list),* )),
        Fields::Unit => TokenStream::new(),
    }
}

/// `path { a: value(a), .. }`, `path(value(0), ..)` or `path`: a
/// constructor or a pattern.
fn build(
    fields: &Fields,
    path: TokenStream,
    value: impl Fn(usize, &syn::Field) -> TokenStream,
) -> TokenStream {
    let values = fields.iter().enumerate().map(|(i, f)| {
        let v = value(i, f);
        match &f.ident {
            Some(id) => quote!(#id: #v),
            None => v,
        }
    });
    match fields {
        Fields::Named(_) => quote!(#path { #(#values),* }),
        Fields::Unnamed(_) => quote!(#path( #(#values),* )),
        Fields::Unit => path,
    }
}
