//! Fieldless enums named by words on the command line and in files: one list gives `NAMES`, `name()`,
//! `Display` and `FromStr`, so that library types need no command-line derive and the CLI lists the names.

/// `named!(Type, "what it is", { Variant => "name", … })`.
macro_rules! named {
    ($ty:ident, $kind:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = crate::Error;
            fn from_str(s: &str) -> crate::Result<$ty> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(crate::Error::Invalid(format!(
                        "unknown {} '{s}' (expected one of: {})",
                        $kind,
                        Self::NAMES.join(", ")
                    ))),
                }
            }
        }
    };
}

pub(crate) use named;

/// Typed fields stored as the names users type (`"eps"`, `"ve"`, `"linear"`), read back with `FromStr`, so that
/// run configs keep the format they have always had.
pub(crate) mod as_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }

    /// The same for optional fields.
    pub mod opt {
        use super::*;

        pub fn serialize<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.collect_str(v),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
        where
            T: FromStr,
            T::Err: Display,
            D: Deserializer<'de>,
        {
            Option::<String>::deserialize(d)?
                .map(|s| s.parse().map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Colour {
        Red,
        DarkBlue,
    }
    super::named!(Colour, "colour", { Red => "red", DarkBlue => "dark-blue" });

    #[test]
    fn names_round_trip_and_unknown_ones_are_listed() {
        for c in [Colour::Red, Colour::DarkBlue] {
            assert_eq!(c.to_string().parse::<Colour>().unwrap(), c);
        }
        assert_eq!(Colour::NAMES, &["red", "dark-blue"]);
        let e = "green".parse::<Colour>().unwrap_err().to_string();
        assert!(
            e.contains("unknown colour 'green'") && e.contains("red, dark-blue"),
            "{e}"
        );
    }
}
