//! A logical stack limit for the deterministic policy. wasmtime's `max_wasm_stack` counts native
//! bytes, so the depth at which deep recursion traps changes with the CPU architecture, the
//! compiler's register allocation and the wasmtime version. Instead the module is instrumented at
//! load (as Substrate does for its runtimes): every call to one of the module's own functions
//! adds the callee's frame cost to a counter global and traps past [`LIMIT_SLOTS`]; the return
//! takes it off again. A frame's cost is counted in slots from the wasm alone (locals and the
//! deepest operand stack, measured by wasmparser's validator), so the trap depth is the same on
//! every host. The native limit is set well above what the logical limit allows (see
//! [`NATIVE_STACK_BYTES`]), so it is never what stops a guest.
//!
//! Tail calls, exceptions and typed function references would leave frames without passing a
//! return, so a module using them is refused under this policy.

use anyhow::{bail, Context, Result};
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{BlockType, ConstExpr, ExportKind, GlobalType, Instruction, Module, RawSection, ValType};
use wasmparser::{FuncValidatorAllocations, Operator, Parser, Payload, ValidPayload, Validator, WasmFeatures};

/// The logical stack, in slots: 64 Ki, about 1 MiB at 16 native bytes a slot.
pub const LIMIT_SLOTS: u32 = 64 * 1024;
/// What one frame costs beside its locals and operand stack: return address, frame pointer,
/// saved registers, alignment.
pub const FRAME_SLOTS: u32 = 16;
/// The native stack under this policy: 16 bytes for each slot (a v128 value is 16 bytes; an
/// i32 or i64 fits in 8) plus room for host calls. The logical limit is always reached first.
pub const NATIVE_STACK_BYTES: usize = LIMIT_SLOTS as usize * 16 + (256 << 10);
/// The counter global, exported so the host can tell its trap from the guest's own.
pub const COUNTER_EXPORT: &str = "__memrepro_stack_slots";

/// The guest's call stack went past the logical limit.
#[derive(Debug)]
pub struct StackLimitExceeded;

impl std::fmt::Display for StackLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stack: the guest's calls went past the deterministic policy's logical stack limit of {LIMIT_SLOTS} slots (the same depth on every host)"
        )
    }
}

impl std::error::Error for StackLimitExceeded {}

/// What instrumenting needs to know about the module, from validating it.
#[derive(Default)]
struct Analysis {
    imported_functions: u32,
    imported_globals: u32,
    defined_globals: u32,
    /// Each defined function's frame cost in slots.
    costs: Vec<u32>,
    /// Exported functions and the start function: the host calls them with nothing counted yet.
    entry_functions: Vec<u32>,
}

impl Analysis {
    /// The cost of an indirect call: the dearest defined function. A call through a table reaches
    /// any function whose signature matches, whatever type index declared it, so the type index
    /// alone would undercount; the dearest of all is never less than the real frame.
    fn indirect_cost(&self) -> u32 {
        self.costs.iter().copied().max().unwrap_or(FRAME_SLOTS)
    }

    /// The counter's start: the dearest entry point's frame, which no call site counts.
    fn entry_cost(&self) -> u32 {
        let defined = |index: &u32| index.checked_sub(self.imported_functions).map(|i| self.costs[i as usize]);
        self.entry_functions.iter().filter_map(defined).max().unwrap_or(0)
    }
}

/// The features a guest may use under the deterministic policy: wasmparser's defaults without
/// those that leave a frame other than by returning.
fn features() -> WasmFeatures {
    WasmFeatures::default()
        - WasmFeatures::TAIL_CALL
        - WasmFeatures::EXCEPTIONS
        - WasmFeatures::LEGACY_EXCEPTIONS
        - WasmFeatures::FUNCTION_REFERENCES
        - WasmFeatures::GC
}

fn analyse(wasm: &[u8]) -> Result<Analysis> {
    let mut validator = Validator::new_with_features(features());
    let mut analysis = Analysis::default();
    let mut allocations = FuncValidatorAllocations::default();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        match &payload {
            Payload::ImportSection(imports) => {
                for import in imports.clone().into_imports() {
                    match import?.ty {
                        wasmparser::TypeRef::Func(_) => analysis.imported_functions += 1,
                        wasmparser::TypeRef::Global(_) => analysis.imported_globals += 1,
                        _ => {}
                    }
                }
            }
            Payload::GlobalSection(globals) => analysis.defined_globals = globals.count(),
            Payload::StartSection { func, .. } => analysis.entry_functions.push(*func),
            Payload::ExportSection(exports) => {
                for export in exports.clone() {
                    let export = export?;
                    if export.kind == wasmparser::ExternalKind::Func {
                        analysis.entry_functions.push(export.index);
                    }
                }
            }
            _ => {}
        }
        if let ValidPayload::Func(function, body) = validator.payload(&payload)? {
            let mut function = function.into_validator(std::mem::take(&mut allocations));
            let mut locals = body.get_locals_reader()?;
            for _ in 0..locals.get_count() {
                let offset = locals.original_position();
                let (count, ty) = locals.read()?;
                function.define_locals(offset, count, ty)?;
            }
            let mut operators = body.get_operators_reader()?;
            let mut deepest = 0;
            while !operators.eof() {
                let (operator, offset) = operators.read_with_offset()?;
                function.op(offset, &operator)?;
                deepest = deepest.max(function.operand_stack_height());
            }
            let cost = FRAME_SLOTS.saturating_add(function.len_locals()).saturating_add(deepest);
            analysis.costs.push(cost);
            allocations = function.into_allocations();
        }
    }
    Ok(analysis)
}

/// `wasm` with every call to a defined function counted against [`LIMIT_SLOTS`].
pub fn instrument(wasm: &[u8]) -> Result<Vec<u8>> {
    let analysis = analyse(wasm).context("the deterministic policy cannot run this guest")?;
    let counter = analysis.imported_globals + analysis.defined_globals;
    let counter_type = GlobalType { val_type: ValType::I32, mutable: true, shared: false };
    let counter_init = ConstExpr::i32_const(analysis.entry_cost() as i32);
    let mut module = Module::new();
    let mut counter_defined = false;
    let (mut code, mut bodies_left, mut defined) = (wasm_encoder::CodeSection::new(), 0, 0);
    let mut reencoder = RoundtripReencoder;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        if comes_after_globals(&payload) && !counter_defined {
            let mut globals = wasm_encoder::GlobalSection::new();
            globals.global(counter_type, &counter_init);
            module.section(&globals);
            counter_defined = true;
        }
        match payload {
            Payload::Version { .. } | Payload::End(_) => {}
            Payload::GlobalSection(section) => {
                let mut globals = wasm_encoder::GlobalSection::new();
                reencoder.parse_global_section(&mut globals, section)?;
                globals.global(counter_type, &counter_init);
                module.section(&globals);
                counter_defined = true;
            }
            Payload::ExportSection(section) => {
                let mut exports = wasm_encoder::ExportSection::new();
                reencoder.parse_export_section(&mut exports, section)?;
                exports.export(COUNTER_EXPORT, ExportKind::Global, counter);
                module.section(&exports);
            }
            Payload::CodeSectionStart { count, .. } => bodies_left = count,
            Payload::CodeSectionEntry(body) => {
                code.function(&counted_body(&body, &analysis, counter)?);
                defined += 1;
                bodies_left -= 1;
                if bodies_left == 0 {
                    module.section(&code);
                }
            }
            other => {
                if let Some((id, range)) = other.as_section() {
                    module.section(&RawSection { id, data: &wasm[range] });
                }
            }
        }
    }
    if defined != analysis.costs.len() {
        bail!("instrumenting: {defined} function bodies for {} functions", analysis.costs.len());
    }
    Ok(module.finish())
}

/// Whether `payload` is a section the global section comes before: the exports, the start and
/// everything after them.
fn comes_after_globals(payload: &Payload) -> bool {
    matches!(
        payload,
        Payload::ExportSection(_)
            | Payload::StartSection { .. }
            | Payload::ElementSection(_)
            | Payload::DataCountSection { .. }
            | Payload::CodeSectionStart { .. }
            | Payload::DataSection(_)
    )
}

/// One function body with each call to a defined function (direct or through a table) counted.
fn counted_body(body: &wasmparser::FunctionBody, analysis: &Analysis, counter: u32) -> Result<wasm_encoder::Function> {
    let mut reencoder = RoundtripReencoder;
    let mut function = reencoder.new_function_with_parsed_locals(body)?;
    let mut operators = body.get_operators_reader()?;
    while !operators.eof() {
        let operator = operators.read()?;
        let cost = match operator {
            Operator::Call { function_index } => {
                function_index.checked_sub(analysis.imported_functions).map(|i| analysis.costs[i as usize])
            }
            Operator::CallIndirect { .. } => Some(analysis.indirect_cost()),
            _ => None,
        };
        let instruction = reencoder.instruction(operator)?;
        match cost {
            Some(cost) => {
                enter(&mut function, counter, cost);
                function.instruction(&instruction);
                leave(&mut function, counter, cost);
            }
            None => {
                function.instruction(&instruction);
            }
        }
    }
    Ok(function)
}

/// `counter += cost; if counter > LIMIT_SLOTS { unreachable }`
fn enter(function: &mut wasm_encoder::Function, counter: u32, cost: u32) {
    function
        .instruction(&Instruction::GlobalGet(counter))
        .instruction(&Instruction::I32Const(cost as i32))
        .instruction(&Instruction::I32Add)
        .instruction(&Instruction::GlobalSet(counter))
        .instruction(&Instruction::GlobalGet(counter))
        .instruction(&Instruction::I32Const(LIMIT_SLOTS as i32))
        .instruction(&Instruction::I32GtU)
        .instruction(&Instruction::If(BlockType::Empty))
        .instruction(&Instruction::Unreachable)
        .instruction(&Instruction::End);
}

/// `counter -= cost`
fn leave(function: &mut wasm_encoder::Function, counter: u32, cost: u32) {
    function
        .instruction(&Instruction::GlobalGet(counter))
        .instruction(&Instruction::I32Const(cost as i32))
        .instruction(&Instruction::I32Sub)
        .instruction(&Instruction::GlobalSet(counter));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instrumented(wat: &str) -> Vec<u8> {
        let wasm = instrument(&wat::parse_str(wat).unwrap()).unwrap();
        wasmparser::Validator::new_with_features(features()).validate_all(&wasm).expect("the instrumented module is valid");
        wasm
    }

    /// The counter's exported index and initial value.
    fn counter(wasm: &[u8]) -> (u32, i32) {
        let (mut index, mut init) = (None, Vec::new());
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.unwrap() {
                Payload::ExportSection(exports) => {
                    index = exports.into_iter().map(|e| e.unwrap()).find(|e| e.name == COUNTER_EXPORT).map(|e| e.index);
                }
                Payload::GlobalSection(globals) => {
                    for global in globals {
                        let mut reader = global.unwrap().init_expr.get_operators_reader();
                        init.push(match reader.read().unwrap() {
                            Operator::I32Const { value } => value,
                            _ => -1,
                        });
                    }
                }
                _ => {}
            }
        }
        // Ours is the last global defined.
        (index.expect("the counter is exported"), *init.last().expect("a global section"))
    }

    #[test]
    fn the_counter_is_a_new_global_after_the_imported_and_defined_ones() {
        let wasm = instrumented(
            r#"(module
                 (import "env" "g" (global i32))
                 (global $own (mut i32) (i32.const 7))
                 (memory (export "memory") 1)
                 (func $leaf (param i32) (result i32) (local i64 i64) (local.get 0))
                 (func (export "_start") (drop (call $leaf (i32.const 1)))))"#,
        );
        let (index, start) = counter(&wasm);
        assert_eq!(index, 2, "after the imported global and the defined one");
        // _start's own frame: no locals, and its deepest operand stack is 1.
        assert_eq!(start, (FRAME_SLOTS + 1) as i32);
    }

    #[test]
    fn the_start_function_s_frame_counts_as_an_entry_point() {
        let wasm = instrumented(
            r#"(module
                 (memory (export "memory") 1)
                 (func $init (local i64 i64 i64 i64 i64 i64 i64 i64 i64 i64))
                 (start $init)
                 (func (export "_start")))"#,
        );
        assert_eq!(counter(&wasm).1, (FRAME_SLOTS + 10) as i32);
    }

    #[test]
    fn a_module_without_globals_gets_a_global_section_in_its_place() {
        let wasm = instrumented(r#"(module (memory (export "memory") 1) (func (export "_start")))"#);
        assert_eq!(counter(&wasm).0, 0);
    }

    #[test]
    fn direct_and_indirect_calls_are_counted_and_imports_are_not() {
        let wasm = instrumented(
            r#"(module
                 (import "env" "__log" (func $log (param i32)))
                 (type $t (func))
                 (table 1 funcref)
                 (elem (i32.const 0) $f)
                 (memory (export "memory") 1)
                 (func $f)
                 (func (export "_start")
                   (call $f)
                   (call_indirect (type $t) (i32.const 0))
                   (call $log (i32.const 0))))"#,
        );
        let calls = |wasm: &[u8]| -> usize {
            let mut globals_set = 0;
            for payload in Parser::new(0).parse_all(wasm) {
                if let Payload::CodeSectionEntry(body) = payload.unwrap() {
                    let mut reader = body.get_operators_reader().unwrap();
                    while !reader.eof() {
                        if matches!(reader.read().unwrap(), Operator::GlobalSet { .. }) {
                            globals_set += 1;
                        }
                    }
                }
            }
            globals_set
        };
        // Two counted calls, each setting the counter on the way in and on the way out.
        assert_eq!(calls(&wasm), 4);
    }

    /// `call_indirect (type $a)` may reach `$big`, declared under another type of the same
    /// signature: it is costed as the dearest function, not as a bare frame.
    #[test]
    fn an_indirect_call_costs_the_dearest_function_whatever_its_type_index() {
        let wasm = instrumented(
            r#"(module
                 (type $a (func)) (type $b (func))
                 (table 1 funcref) (elem (i32.const 0) $big)
                 (memory (export "memory") 1)
                 (func $big (type $b) (local i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64))
                 (func (export "_start") (call_indirect (type $a) (i32.const 0))))"#,
        );
        let mut costs = Vec::new();
        for payload in Parser::new(0).parse_all(&wasm) {
            if let Payload::CodeSectionEntry(body) = payload.unwrap() {
                let mut reader = body.get_operators_reader().unwrap();
                while !reader.eof() {
                    if let Operator::I32Const { value } = reader.read().unwrap() {
                        costs.push(value);
                    }
                }
            }
        }
        assert!(costs.contains(&((FRAME_SLOTS + 20) as i32)), "{costs:?}");
    }

    #[test]
    fn tail_calls_are_refused_with_the_reason() {
        let wasm = wat::parse_str(r#"(module (memory (export "memory") 1) (func $f) (func (export "_start") (return_call $f)))"#).unwrap();
        let error = format!("{:#}", instrument(&wasm).unwrap_err());
        assert!(error.starts_with("the deterministic policy cannot run this guest") && error.contains("tail calls"), "{error}");
    }
}
