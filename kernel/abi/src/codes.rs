//! [`stable_codes!`](crate::stable_codes): one table defines an enum whose
//! variants carry stable numeric codes (syscall numbers, error codes that
//! cross the kernel/task or IPC boundary), and generates from it everything
//! that must agree with it: `ALL`, `code()`, `from_code()`, `name()` and
//! `Display`. A variant cannot be left out of `ALL` or `from_code`, and two
//! variants cannot share a code (the compiler refuses duplicate
//! discriminants).

/// Defines a fieldless `#[repr($repr)]` enum from a table of variants and
/// their stable codes, with:
///
/// - `ALL`: every variant, in table order;
/// - `code(self) -> $repr`: the variant's code;
/// - `from_code($repr) -> Option<Self>`: the variant with that code, `None`
///   for any other value;
/// - `name(self) -> &'static str`: the `=> "name"` given in the table, or
///   the variant's identifier when none is;
/// - `Display`, which writes `name()`.
///
/// The enum derives `Clone, Copy, Debug, PartialEq, Eq, Hash`; attributes
/// written before `pub enum` (its doc comment, further derives) and before
/// each variant (its doc comment) are kept.
///
/// ```
/// abi::stable_codes! {
///     /// Why a request failed.
///     pub enum Fault: u16 {
///         /// The message does not decode.
///         Malformed = 1 => "malformed",
///         /// Nobody answered in time.
///         Timeout = 2,
///     }
/// }
///
/// assert_eq!(Fault::ALL, [Fault::Malformed, Fault::Timeout]);
/// assert_eq!(Fault::Timeout.code(), 2);
/// assert_eq!(Fault::from_code(1), Some(Fault::Malformed));
/// assert_eq!(Fault::from_code(3), None);
/// assert_eq!(Fault::Malformed.name(), "malformed");
/// assert_eq!(Fault::Timeout.to_string(), "Timeout");
/// ```
///
/// Two variants with one code do not compile:
///
/// ```compile_fail,E0081
/// abi::stable_codes! {
///     /// Clashing codes.
///     pub enum Clash: u8 {
///         /// First.
///         A = 1,
///         /// Same code.
///         B = 1,
///     }
/// }
/// ```
#[macro_export]
macro_rules! stable_codes {
    (@name $variant:ident $name:literal) => {
        $name
    };
    (@name $variant:ident) => {
        ::core::stringify!($variant)
    };
    (
        $(#[$meta:meta])*
        $vis:vis enum $enum:ident : $repr:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $code:literal $(=> $name:literal)?
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr($repr)]
        $vis enum $enum {
            $(
                $(#[$vmeta])*
                $variant = $code,
            )+
        }

        impl $enum {
            /// Every variant, in the order of its definition.
            pub const ALL: [$enum; [$(::core::stringify!($variant)),+].len()] =
                [$($enum::$variant),+];

            /// The stable code.
            pub const fn code(self) -> $repr {
                self as $repr
            }

            /// The variant whose code is `code`, or `None` if there is none.
            pub const fn from_code(code: $repr) -> ::core::option::Option<$enum> {
                match code {
                    $($code => ::core::option::Option::Some($enum::$variant),)+
                    _ => ::core::option::Option::None,
                }
            }

            /// A short name, for logs and test output.
            pub const fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => $crate::stable_codes!(@name $variant $($name)?),)+
                }
            }
        }

        impl ::core::fmt::Display for $enum {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::stable_codes! {
        /// A table with gaps, named and unnamed variants, a trailing comma.
        pub enum Sample: u8 {
            /// First.
            One = 1 => "one",
            /// Second, named after itself.
            Five = 5,
            /// Last.
            Max = 255 => "the max",
        }
    }

    #[test]
    fn generated_items_agree_with_the_table() {
        assert_eq!(Sample::ALL, [Sample::One, Sample::Five, Sample::Max]);
        assert_eq!(Sample::ALL.map(Sample::code), [1, 5, 255]);
        assert_eq!(Sample::ALL.map(Sample::name), ["one", "Five", "the max"]);
        for code in 0..=u8::MAX {
            let want = Sample::ALL.iter().copied().find(|s| s.code() == code);
            assert_eq!(Sample::from_code(code), want, "code {code}");
        }
        assert_eq!(Sample::Max.to_string(), "the max");
        assert_eq!(format!("{:?}", Sample::Max), "Max");
    }
}
