//! A small, safe Python pickle reader (protocols 0–5) for PyTorch files.
//!
//! Why not candle's `pickle` module: it lacks opcodes that real checkpoints
//! use (SHORT_BINUNICODE, FRAME, MEMOIZE, STACK_GLOBAL, LONG4, BINBYTES, ...),
//! panics on the 10-byte LONG1 magic number of legacy `torch.save` files, and
//! merges `OrderedDict` attributes into the dict. This reader never executes
//! anything: globals and reductions become plain values that the caller
//! interprets (see [`super::pth`]). Every error names the byte offset.

use std::collections::HashMap;

/// A decoded pickle value. Calls (`REDUCE`, `NEWOBJ`, `BUILD`) are recorded,
/// not performed.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`
    None,
    /// `True` / `False`
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A larger integer, little-endian two's complement bytes.
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A `str`.
    Str(String),
    /// `bytes` / `bytearray` / a protocol-0/1 byte string.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict (any mapping, `OrderedDict` included), in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A set or frozenset.
    Set(Vec<Value>),
    /// A global reference `module.name`.
    Global {
        /// Module path.
        module: String,
        /// Attribute name.
        name: String,
    },
    /// `callable(*args)`, not performed.
    Reduce {
        /// The callable (usually a [`Value::Global`]).
        callable: Box<Value>,
        /// Its arguments (usually a tuple).
        args: Box<Value>,
    },
    /// `obj.__setstate__(state)`, not performed.
    Build {
        /// The object.
        obj: Box<Value>,
        /// Its state.
        state: Box<Value>,
    },
    /// A persistent id (PyTorch uses it for tensor storages).
    Persistent(Box<Value>),
    /// The stack marker; never in a finished result.
    Mark,
}

impl Value {
    /// The string, if this is a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is a small int.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The items, if this is a tuple or a list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }
}

/// A pickle decoding error with the byte offset (from the start of the
/// slice given to [`Unpickler::new`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PickleError {
    /// Offset of the failing opcode or operand.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pickle error at byte {}: {}", self.offset, self.message)
    }
}

type PResult<T> = std::result::Result<T, PickleError>;

/// Reads consecutive pickles from a byte slice.
pub struct Unpickler<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Offset of `bytes[0]` in the file, for error messages.
    base: usize,
}

impl<'a> Unpickler<'a> {
    /// Reads from `bytes`; `base` is their offset in the file (for errors).
    pub fn new(bytes: &'a [u8], base: usize) -> Self {
        Unpickler {
            bytes,
            pos: 0,
            base,
        }
    }

    /// Position after the last pickle read, relative to `bytes`.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn err<T>(&self, at: usize, message: impl Into<String>) -> PResult<T> {
        Err(PickleError {
            offset: self.base + at,
            message: message.into(),
        })
    }

    fn take(&mut self, n: usize) -> PResult<&'a [u8]> {
        if self.bytes.len() - self.pos < n {
            return self.err(
                self.pos,
                format!(
                    "truncated: needs {n} more bytes, {} left",
                    self.bytes.len() - self.pos
                ),
            );
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> PResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn uint(&mut self, n: usize) -> PResult<u64> {
        let b = self.take(n)?;
        let mut v = 0u64;
        for (i, byte) in b.iter().enumerate() {
            v |= (*byte as u64) << (8 * i);
        }
        Ok(v)
    }

    fn len_field(&mut self, n: usize) -> PResult<usize> {
        let at = self.pos;
        let v = self.uint(n)?;
        if v > (self.bytes.len() - self.pos) as u64 {
            return self.err(at, format!("length {v} runs past the end of the data"));
        }
        Ok(v as usize)
    }

    fn line(&mut self) -> PResult<&'a str> {
        let start = self.pos;
        let end = match self.bytes[start..].iter().position(|&b| b == b'\n') {
            Some(i) => start + i,
            None => return self.err(start, "truncated: missing end of line"),
        };
        self.pos = end + 1;
        let s = &self.bytes[start..end];
        let s = s.strip_suffix(b"\r").unwrap_or(s);
        std::str::from_utf8(s).or_else(|_| self.err(start, "text operand is not UTF-8"))
    }

    fn utf8(&self, at: usize, b: &[u8]) -> PResult<String> {
        String::from_utf8(b.to_vec()).or_else(|_| self.err(at, "string is not UTF-8"))
    }

    /// Reads one whole pickle (up to and including STOP) and returns its value.
    pub fn load(&mut self) -> PResult<Value> {
        let mut stack: Vec<Value> = Vec::new();
        let mut marks: Vec<usize> = Vec::new();
        let mut memo: HashMap<u64, Value> = HashMap::new();

        macro_rules! pop {
            ($at:expr) => {
                match stack.pop() {
                    Some(v) => v,
                    None => return self.err($at, "stack underflow"),
                }
            };
        }
        macro_rules! pop_mark {
            ($at:expr) => {{
                let Some(m) = marks.pop() else {
                    return self.err($at, "no MARK on the stack");
                };
                if m > stack.len() {
                    return self.err($at, "MARK below the stack");
                }
                stack.split_off(m)
            }};
        }

        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return self.err(at, format!("unsupported pickle protocol {p}"));
                    }
                }
                0x95 => {
                    self.uint(8)?; // FRAME: a size hint only
                }
                b'.' => {
                    let v = pop!(at);
                    return Ok(v);
                }
                b'(' => marks.push(stack.len()),
                b'0' => {
                    pop!(at);
                }
                b'1' => {
                    let _ = pop_mark!(at);
                }
                b'2' => {
                    let v = match stack.last() {
                        Some(v) => v.clone(),
                        None => return self.err(at, "DUP on an empty stack"),
                    };
                    stack.push(v);
                }
                b'N' => stack.push(Value::None),
                0x88 => stack.push(Value::Bool(true)),
                0x89 => stack.push(Value::Bool(false)),
                b'J' => {
                    let v = self.uint(4)? as u32 as i32;
                    stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.uint(2)?;
                    stack.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        self.len_field(4)?
                    };
                    let b = self.take(n)?;
                    stack.push(long_from_le(b));
                }
                b'I' | b'L' => {
                    let s = self.line()?.trim_end_matches('L');
                    let v = match s {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => match s.parse::<i64>() {
                            Ok(i) => Value::Int(i),
                            Err(_) => return self.err(at, format!("bad integer literal {s:?}")),
                        },
                    };
                    stack.push(v);
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().expect("8 bytes"));
                    stack.push(Value::Float(v));
                }
                b'F' => {
                    let s = self.line()?;
                    match s.parse::<f64>() {
                        Ok(v) => stack.push(Value::Float(v)),
                        Err(_) => return self.err(at, format!("bad float literal {s:?}")),
                    }
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.len_field(4)?,
                        0x8c => self.len_field(1)?,
                        _ => self.len_field(8)?,
                    };
                    let start = self.pos;
                    let b = self.take(n)?;
                    stack.push(Value::Str(self.utf8(start, b)?));
                }
                b'V' => {
                    let s = self.line()?;
                    stack.push(Value::Str(s.to_string()));
                }
                b'T' | b'U' | b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'T' | b'B' => self.len_field(4)?,
                        b'U' | b'C' => self.len_field(1)?,
                        _ => self.len_field(8)?,
                    };
                    let b = self.take(n)?;
                    stack.push(Value::Bytes(b.to_vec()));
                }
                b')' => stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = pop_mark!(at);
                    stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if stack.len() < n {
                        return self.err(at, "stack underflow");
                    }
                    let items = stack.split_off(stack.len() - n);
                    stack.push(Value::Tuple(items));
                }
                b']' => stack.push(Value::List(Vec::new())),
                b'l' => {
                    let items = pop_mark!(at);
                    stack.push(Value::List(items));
                }
                b'a' => {
                    let v = pop!(at);
                    match stack.last_mut() {
                        Some(Value::List(l)) => l.push(v),
                        _ => return self.err(at, "APPEND to something that is not a list"),
                    }
                }
                b'e' => {
                    let items = pop_mark!(at);
                    match stack.last_mut() {
                        Some(Value::List(l)) => l.extend(items),
                        _ => return self.err(at, "APPENDS to something that is not a list"),
                    }
                }
                b'}' => stack.push(Value::Dict(Vec::new())),
                b'd' => {
                    let items = pop_mark!(at);
                    if items.len() % 2 != 0 {
                        return self.err(at, "DICT with an odd number of items");
                    }
                    stack.push(Value::Dict(pairs(items)));
                }
                b's' => {
                    let v = pop!(at);
                    let k = pop!(at);
                    match stack.last_mut() {
                        Some(Value::Dict(d)) => d.push((k, v)),
                        _ => return self.err(at, "SETITEM on something that is not a dict"),
                    }
                }
                b'u' => {
                    let items = pop_mark!(at);
                    if items.len() % 2 != 0 {
                        return self.err(at, "SETITEMS with an odd number of items");
                    }
                    match stack.last_mut() {
                        Some(Value::Dict(d)) => d.extend(pairs(items)),
                        _ => return self.err(at, "SETITEMS on something that is not a dict"),
                    }
                }
                0x8f => stack.push(Value::Set(Vec::new())),
                0x90 => {
                    let items = pop_mark!(at);
                    match stack.last_mut() {
                        Some(Value::Set(s)) => s.extend(items),
                        _ => return self.err(at, "ADDITEMS on something that is not a set"),
                    }
                }
                0x91 => {
                    let items = pop_mark!(at);
                    stack.push(Value::Set(items));
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    stack.push(Value::Global { module, name });
                }
                0x93 => {
                    let name = pop!(at);
                    let module = pop!(at);
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => {
                            stack.push(Value::Global { module, name })
                        }
                        _ => return self.err(at, "STACK_GLOBAL needs two strings"),
                    }
                }
                b'R' => {
                    let args = pop!(at);
                    let callable = pop!(at);
                    stack.push(reduce(callable, args));
                }
                0x81 => {
                    let args = pop!(at);
                    let cls = pop!(at);
                    stack.push(reduce(cls, args));
                }
                0x92 => {
                    let _kwargs = pop!(at);
                    let args = pop!(at);
                    let cls = pop!(at);
                    stack.push(reduce(cls, args));
                }
                b'b' => {
                    let state = pop!(at);
                    let obj = pop!(at);
                    stack.push(build(obj, state));
                }
                b'Q' => {
                    let pid = pop!(at);
                    stack.push(Value::Persistent(Box::new(pid)));
                }
                b'P' => {
                    let s = self.line()?;
                    stack.push(Value::Persistent(Box::new(Value::Str(s.to_string()))));
                }
                b'q' | b'r' | b'p' | 0x94 => {
                    let id = match op {
                        b'q' => self.uint(1)?,
                        b'r' => self.uint(4)?,
                        b'p' => {
                            let s = self.line()?;
                            match s.parse() {
                                Ok(v) => v,
                                Err(_) => return self.err(at, format!("bad memo key {s:?}")),
                            }
                        }
                        _ => memo.len() as u64,
                    };
                    match stack.last() {
                        Some(v) => {
                            memo.insert(id, v.clone());
                        }
                        None => return self.err(at, "PUT on an empty stack"),
                    }
                }
                b'h' | b'j' | b'g' => {
                    let id = match op {
                        b'h' => self.uint(1)?,
                        b'j' => self.uint(4)?,
                        _ => {
                            let s = self.line()?;
                            match s.parse() {
                                Ok(v) => v,
                                Err(_) => return self.err(at, format!("bad memo key {s:?}")),
                            }
                        }
                    };
                    match memo.get(&id) {
                        Some(v) => stack.push(v.clone()),
                        None => return self.err(at, format!("memo key {id} was never stored")),
                    }
                }
                other => {
                    return self.err(at, format!("unknown opcode 0x{other:02x}"));
                }
            }
        }
    }
}

fn pairs(items: Vec<Value>) -> Vec<(Value, Value)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

fn long_from_le(b: &[u8]) -> Value {
    if b.is_empty() {
        return Value::Int(0);
    }
    if b.len() <= 8 {
        let negative = b[b.len() - 1] & 0x80 != 0;
        let mut v: u64 = if negative { u64::MAX } else { 0 };
        for (i, byte) in b.iter().enumerate() {
            v &= !(0xffu64 << (8 * i));
            v |= (*byte as u64) << (8 * i);
        }
        return Value::Int(v as i64);
    }
    Value::BigInt(b.to_vec())
}

/// Mapping types are turned into dicts right away so that the following
/// SETITEMS fill them (PyTorch state dicts are `OrderedDict`s).
fn reduce(callable: Value, args: Value) -> Value {
    if let Value::Global { module, name } = &callable {
        if module == "collections" && (name == "OrderedDict" || name == "defaultdict") {
            return Value::Dict(Vec::new());
        }
        if module == "builtins" && name == "set" {
            if let Value::Tuple(mut a) = args.clone() {
                if let Some(Value::List(items)) = a.pop() {
                    return Value::Set(items);
                }
            }
        }
    }
    Value::Reduce {
        callable: Box::new(callable),
        args: Box::new(args),
    }
}

/// BUILD on a dict sets attributes (e.g. a state dict's `_metadata`), which
/// are not items: keep the dict as it is.
fn build(obj: Value, state: Value) -> Value {
    match obj {
        Value::Dict(d) => Value::Dict(d),
        obj => Value::Build {
            obj: Box::new(obj),
            state: Box::new(state),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_protocol_2_and_4_basics() {
        // pickle.dumps({'a': [1, -2, 3.5], 'b': (True, None)}, protocol=2)
        let p2 = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00eX\x01\x00\x00\x00bq\x03\x88N\x86q\x04u.";
        let v = Unpickler::new(p2, 0).load().unwrap();
        let Value::Dict(d) = v else {
            panic!("not a dict")
        };
        assert_eq!(d[0].0, Value::Str("a".into()));
        assert_eq!(
            d[0].1,
            Value::List(vec![Value::Int(1), Value::Int(-2), Value::Float(3.5)])
        );
        assert_eq!(d[1].1, Value::Tuple(vec![Value::Bool(true), Value::None]));
        // pickle.dumps(('x', 2**70), protocol=4)
        let p4 = b"\x80\x04\x95\x18\x00\x00\x00\x00\x00\x00\x00\x8c\x01x\x94\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00@\x86\x94.";
        let v = Unpickler::new(p4, 0).load().unwrap();
        assert_eq!(
            v,
            Value::Tuple(vec![
                Value::Str("x".into()),
                Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0, 0x40])
            ])
        );
    }

    #[test]
    fn long1_sign_extends() {
        assert_eq!(long_from_le(&[0xff]), Value::Int(-1));
        assert_eq!(long_from_le(&[0x00, 0x01]), Value::Int(256));
        assert_eq!(
            long_from_le(&[0x6a, 0xa8, 0x50, 0x19]),
            Value::Int(0x1950a86a)
        );
    }

    #[test]
    fn bad_input_is_an_error_with_offset() {
        let err = Unpickler::new(b"\x80\x02\xff", 10).load().unwrap_err();
        assert_eq!(err.offset, 12);
        assert!(err.message.contains("0xff"));
        let err = Unpickler::new(b"\x80\x02X\xff\xff\xff\x7f", 0)
            .load()
            .unwrap_err();
        assert!(err.message.contains("runs past"), "{err}");
        assert!(Unpickler::new(b"", 0).load().is_err());
        assert!(Unpickler::new(b"e.", 0).load().is_err());
        assert!(Unpickler::new(b"h\x05.", 0).load().is_err());
    }

    #[test]
    fn never_panics_on_garbage() {
        // A cheap deterministic fuzz: every prefix and many byte flips of a
        // valid pickle must return, not panic.
        let p2 = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00eX\x01\x00\x00\x00bq\x03\x88N\x86q\x04u.";
        for n in 0..p2.len() {
            let _ = Unpickler::new(&p2[..n], 0).load();
        }
        for i in 0..p2.len() {
            for b in [0u8, 0x28, 0x2e, 0x71, 0x80, 0x8a, 0x93, 0xff] {
                let mut v = p2.to_vec();
                v[i] = b;
                let _ = Unpickler::new(&v, 0).load();
            }
        }
    }
}
