//! `#[derive(Merge)]` for [replisync](https://docs.rs/replisync): implements `Merge`
//! and `Fields` for a struct whose fields are all `Merge` (registers, maps, lease
//! records, nested bundles), merging field by field.
//!
//! Every field is merged: there is no list of fields to keep in step with the struct,
//! so a field added later cannot be encoded yet never merged. Use it through
//! `replisync::Merge`, which re-exports it.

#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Fields, Index, Member};

/// Implements `replisync::Merge` and `replisync::Fields` for a struct of mergeable
/// fields (named or a tuple struct).
///
/// - `merge` merges every field and reports field `i` changed in bit `i` (fields past
///   the 63rd share bit 63);
/// - `visit_stamps` visits every field's stamps;
/// - `split` gives each field's pieces, each in a piece of its own (the struct must
///   implement `Default`);
/// - `FIELDS` names the fields in order (`"0"`, `"1"`, ... for a tuple struct).
#[proc_macro_derive(Merge)]
pub fn derive_merge(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let fields = match &input.data {
        Data::Struct(s) => &s.fields,
        _ => {
            return Err(syn::Error::new(
                Span::call_site(),
                "#[derive(Merge)] works on structs of mergeable fields; \
                 implement Merge by hand for an enum or a union",
            ))
        }
    };
    let members: Vec<Member> = match fields {
        Fields::Named(named) => named
            .named
            .iter()
            .filter_map(|f| f.ident.clone().map(Member::Named))
            .collect(),
        Fields::Unnamed(unnamed) => (0..unnamed.unnamed.len())
            .map(|i| Member::Unnamed(Index::from(i)))
            .collect(),
        Fields::Unit => Vec::new(),
    };
    if members.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            "#[derive(Merge)] needs at least one field",
        ));
    }
    let names: Vec<String> = members
        .iter()
        .map(|m| match m {
            Member::Named(ident) => ident.to_string(),
            Member::Unnamed(index) => index.index.to_string(),
        })
        .collect();
    let indices: Vec<u32> = (0..members.len() as u32).collect();
    let name = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::replisync::Merge for #name #type_generics #where_clause {
            fn merge(&mut self, other: &Self) -> ::replisync::Merged {
                ::replisync::Merged::NONE
                    #( .with_field(#indices, ::replisync::Merge::merge(&mut self.#members, &other.#members)) )*
            }

            fn visit_stamps(&self, visit: &mut dyn FnMut(&::replisync::Stamp)) {
                #( ::replisync::Merge::visit_stamps(&self.#members, visit); )*
            }

            fn split(&self, parts: usize) -> ::std::vec::Vec<Self> {
                let mut pieces = ::std::vec::Vec::new();
                #(
                    for piece in ::replisync::Merge::split(&self.#members, parts) {
                        let mut whole = <Self as ::core::default::Default>::default();
                        whole.#members = piece;
                        pieces.push(whole);
                    }
                )*
                pieces
            }
        }

        impl #impl_generics ::replisync::Fields for #name #type_generics #where_clause {
            const FIELDS: &'static [&'static str] = &[#(#names),*];
        }
    })
}
