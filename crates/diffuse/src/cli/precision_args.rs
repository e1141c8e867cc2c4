//! `--precision`, shared by the commands that run a network: f32, or bf16 mixed precision on CPUs with
//! AVX512-BF16.

use diffuse::kernels::bf16;
use diffuse::kernels::matmul::Precision;

#[derive(clap::Args, Clone, Debug)]
pub struct PrecisionArg {
    /// Operand precision of the convolutions' products: bf16 rounds their operands to bfloat16 and sums in f32
    /// (mixed precision: weights, optimiser state and normalisation stay f32). Needs AVX512-BF16; elsewhere it
    /// runs in f32 and says so, once.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
}

impl PrecisionArg {
    /// The precision the kernels will run in: bf16 falls back to f32, with a note, where the CPU lacks it.
    pub fn resolve(&self) -> Precision {
        if self.precision == Precision::Bf16 && !bf16::available() {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                eprintln!("note: --precision bf16 needs AVX512-BF16, which this CPU lacks: running in f32")
            });
            return Precision::F32;
        }
        self.precision
    }
}
