//! "Did you mean ...?" for misspelt names.

/// The closest candidate to `name`, worded as a hint, if any is close enough.
pub fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    closest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .filter(|c| *c != name)
        .map(|c| {
            (
                strsim::damerau_levenshtein(&name.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_close_names() {
        let names = ["phone", "priority", "summary"];
        assert_eq!(closest("phnoe", names.into_iter()), Some("phone"));
        assert_eq!(closest("summry", names.into_iter()), Some("summary"));
        assert_eq!(closest("zzz", names.into_iter()), None);
    }
}
