//! Numbers written as words, read the same way by the guardrail ("three
//! hundred fifty dollars") and the guided flow ("two mattresses").

/// "one" to "ninety", as numbers.
pub fn small_number_word(w: &str) -> Option<u32> {
    const ONES: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = [
        "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    if let Some(i) = ONES.iter().position(|o| *o == w) {
        return Some(i as u32);
    }
    TENS.iter().position(|t| *t == w).map(|i| (i as u32 + 2) * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ones_and_tens() {
        assert_eq!(small_number_word("zero"), Some(0));
        assert_eq!(small_number_word("nineteen"), Some(19));
        assert_eq!(small_number_word("twenty"), Some(20));
        assert_eq!(small_number_word("ninety"), Some(90));
        assert_eq!(small_number_word("hundred"), None);
    }
}
