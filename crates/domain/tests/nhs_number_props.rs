//! Properties of NHS number parsing and the Modulus 11 check digit.
//!
//! Why the detection properties hold: a number d1..d10 is valid exactly when
//! `10·d1 + 9·d2 + … + 2·d9 + 1·d10 ≡ 0 (mod 11)`. The check digit `11 − (S mod 11)` of the
//! weighted sum S of the first nine makes S plus it a multiple of 11; "11 → 0" is the case
//! where S already is one; and check value 10 would need a tenth digit of 10, so no digit
//! satisfies the congruence and such prefixes have no valid number. 11 is prime and every
//! weight is 1..10, so:
//!
//! - changing one digit by δ (1 ≤ |δ| ≤ 9) changes the sum by `w·δ`, never a multiple of 11:
//!   always detected, the check digit's position included;
//! - swapping two different digits a ≠ b at positions with weights w ≠ v changes the sum by
//!   `(w − v)(a − b)`, with `1 ≤ |w − v| ≤ 9` and `1 ≤ |a − b| ≤ 9`: never a multiple of 11,
//!   so always detected. Adjacent positions have `|w − v| = 1`.
//!
//! One might expect a swap of the ninth digit with the check digit to slip through, since the
//! check digit is not one of the weighted digits 1–9. It does not: in the sum above it acts
//! with weight 1, next to the ninth digit's 2, so the same argument holds. (When the swapped
//! first nine digits have check value 10 the number is refused for that reason instead, which
//! is still a detection.) So the adjacent-transposition property covers all nine adjacent
//! pairs, the check digit included, and a further property covers any two positions.

use cpis_domain::{NhsNumber, NhsNumberError, check_digit_for};
use proptest::collection::vec;
use proptest::prelude::*;

/// Nine leading digits.
fn prefix() -> impl Strategy<Value = [u8; 9]> {
    proptest::array::uniform9(0u8..=9)
}

/// A valid NHS number.
fn valid_number() -> impl Strategy<Value = NhsNumber> {
    prefix().prop_filter_map("check value 10", |prefix| NhsNumber::from_prefix(&prefix))
}

/// Writes digit values as text.
fn text(digits: &[u8]) -> String {
    digits
        .iter()
        .map(|digit| char::from(b'0' + digit))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// (1) Every prefix with its computed check digit parses; a prefix whose check value
    /// would be 10 is refused whatever the last digit.
    #[test]
    fn every_prefix_with_its_check_digit_parses(prefix in prefix(), last in 0u8..=9) {
        let mut digits = prefix.to_vec();
        match check_digit_for(&prefix) {
            Some(check) => {
                digits.push(check);
                let number = NhsNumber::parse(&text(&digits)).unwrap();
                prop_assert_eq!(number.digits().to_vec(), digits);
                prop_assert_eq!(number.check_digit(), check);
            }
            None => {
                digits.push(last);
                prop_assert_eq!(
                    NhsNumber::parse(&text(&digits)),
                    Err(NhsNumberError::CheckDigitTen)
                );
            }
        }
    }

    /// (2) Changing any single digit to a different digit is always detected.
    #[test]
    fn a_changed_digit_is_detected(number in valid_number(), position in 0usize..10, shift in 1u8..=9) {
        let mut digits = number.digits();
        digits[position] = (digits[position] + shift) % 10;
        prop_assert!(NhsNumber::parse(&text(&digits)).is_err());
    }

    /// (3) Swapping two adjacent different digits is detected, at every adjacent pair
    /// (positions 1–2 up to 9–10, the check digit included; see the module docs).
    #[test]
    fn an_adjacent_transposition_is_detected(number in valid_number(), position in 0usize..9) {
        let mut digits = number.digits();
        prop_assume!(digits[position] != digits[position + 1]);
        digits.swap(position, position + 1);
        prop_assert!(NhsNumber::parse(&text(&digits)).is_err());
    }

    /// Swapping any two different digits, adjacent or not, is detected too: the weights
    /// 10..1 are distinct modulo 11.
    #[test]
    fn any_transposition_is_detected(number in valid_number(), first in 0usize..10, second in 0usize..10) {
        let mut digits = number.digits();
        prop_assume!(digits[first] != digits[second]);
        digits.swap(first, second);
        prop_assert!(NhsNumber::parse(&text(&digits)).is_err());
    }

    /// Display (3-3-4 with spaces) parses back to the same number, and so does `as_str`.
    #[test]
    fn display_round_trips(number in valid_number()) {
        let shown = number.to_string();
        prop_assert_eq!(shown.len(), 12);
        prop_assert_eq!(NhsNumber::parse(&shown), Ok(number));
        prop_assert_eq!(NhsNumber::parse(number.as_str()), Ok(number));
    }

    /// Spaces and dashes inserted anywhere (before, between, after the digits) change nothing.
    #[test]
    fn separators_anywhere_parse_to_the_same_number(
        number in valid_number(),
        gaps in vec(vec(prop_oneof![Just(' '), Just('-')], 0..3), 11),
    ) {
        let mut input = String::new();
        for (gap, digit) in gaps.iter().zip(number.as_str().chars().map(Some).chain([None])) {
            input.extend(gap);
            input.extend(digit);
        }
        prop_assert_eq!(NhsNumber::parse(&input), Ok(number));
    }

    /// Any text either parses to a number whose digits are exactly the text's digits, or is
    /// refused; parsing never panics.
    #[test]
    fn arbitrary_text_never_panics(input in any::<String>()) {
        if let Ok(number) = NhsNumber::parse(&input) {
            let digits: String = input.chars().filter(char::is_ascii_digit).collect();
            prop_assert_eq!(number.as_str(), digits);
            prop_assert!(input.chars().all(|c| c.is_ascii_digit() || c == ' ' || c == '-'));
        }
    }

    /// Synthetic numbers are exactly those starting 999 (half the cases are forced into that
    /// range, which random digits would rarely reach).
    #[test]
    fn synthetic_means_starting_999(mut prefix in prefix(), force in any::<bool>()) {
        if force {
            prefix[..3].copy_from_slice(&[9, 9, 9]);
        }
        prop_assume!(NhsNumber::from_prefix(&prefix).is_some());
        let number = NhsNumber::from_prefix(&prefix).unwrap();
        prop_assert_eq!(number.is_synthetic(), number.as_str().starts_with("999"));
    }
}

/// The well-known example is valid, and its neighbours by one digit are not.
#[test]
fn the_well_known_example() {
    let number: NhsNumber = "943 476 5919".parse().unwrap();
    assert_eq!(number.as_str(), "9434765919");
    assert_eq!(check_digit_for(&[9, 4, 3, 4, 7, 6, 5, 9, 1]), Some(9));
    // Swapping the ninth digit and the check digit: 9434765991.
    assert_eq!(
        NhsNumber::parse("9434765991"),
        Err(NhsNumberError::CheckDigitMismatch)
    );
}
