//! Byte offsets to lines and columns, in characters (for humans and `--format json`) and in
//! UTF-16 code units (for the language server).

/// Start offsets of every line of one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineIndex {
    starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            starts,
            len: text.len(),
        }
    }

    /// 0-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        let offset = offset.min(self.len);
        match self.starts.binary_search(&offset) {
            Ok(l) => l,
            Err(l) => l.saturating_sub(1),
        }
    }

    pub fn line_start(&self, line: usize) -> usize {
        self.starts.get(line).copied().unwrap_or(self.len)
    }

    pub fn line_count(&self) -> usize {
        self.starts.len()
    }

    /// 1-based line and 1-based column counted in characters.
    pub fn line_col(&self, text: &str, offset: usize) -> (u32, u32) {
        let line = self.line(offset);
        let start = self.line_start(line);
        let col = text
            .get(start..offset.min(text.len()))
            .map_or(0, |s| s.chars().count());
        (to_u32(line + 1), to_u32(col + 1))
    }

    /// 0-based line and 0-based column in UTF-16 code units (LSP positions).
    pub fn utf16_position(&self, text: &str, offset: usize) -> (u32, u32) {
        let line = self.line(offset);
        let start = self.line_start(line);
        let col: usize = text
            .get(start..offset.min(text.len()))
            .map_or(0, |s| s.chars().map(char::len_utf16).sum());
        (to_u32(line), to_u32(col))
    }

    /// The byte offset of a 0-based line and UTF-16 column, clamped to the line.
    pub fn offset_of_utf16(&self, text: &str, line: u32, col: u32) -> usize {
        let line = line as usize;
        if line >= self.starts.len() {
            return self.len;
        }
        let start = self.line_start(line);
        let end = self
            .starts
            .get(line + 1)
            .map_or(self.len, |e| e.saturating_sub(1));
        let mut units = 0usize;
        for (i, c) in text.get(start..end).unwrap_or("").char_indices() {
            if units >= col as usize {
                return start + i;
            }
            units += c.len_utf16();
        }
        end
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_and_utf16_units() {
        let text = "ab\näö😀x\n";
        let idx = LineIndex::new(text);
        let x = text.find('x').unwrap_or(0);
        assert_eq!(idx.line_col(text, x), (2, 4));
        assert_eq!(idx.utf16_position(text, x), (1, 4));
        assert_eq!(idx.offset_of_utf16(text, 1, 4), x);
        assert_eq!(idx.line_col(text, 0), (1, 1));
        assert_eq!(idx.line_col(text, text.len()), (3, 1));
    }
}
