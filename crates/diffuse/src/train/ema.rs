//! Exponential moving average of the weights: ema ← d·ema + (1 − d)·θ after every optimiser step.

use crate::nn::Net;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use std::collections::HashMap;

/// The decay at a step, warmed up as min(d, (1 + k)/(10 + k)) so early averages are not dominated by the
/// random initialisation.
pub fn decay(max: f64, step: usize) -> f64 {
    max.min((1.0 + step as f64) / (10.0 + step as f64))
}

/// Blends the current weights into the average; parameters are matched by id (the two share ids).
pub fn update(ema: Net, model: &Net, decay: f64) -> Net {
    struct Snap(HashMap<ParamId, Tensor<1>>);
    impl ModuleVisitor for Snap {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let t = p.val().without_autodiff();
            let n = t.shape().num_elements();
            self.0.insert(p.id, t.reshape([n]));
        }
    }
    struct Blend(HashMap<ParamId, Tensor<1>>, f64);
    impl ModuleMapper for Blend {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some(src) = self.0.remove(&p.id) else { return p };
            let d = self.1;
            p.map(|e| {
                let shape = e.shape();
                e.mul_scalar(d) + src.reshape(shape).mul_scalar(1.0 - d)
            })
        }
    }
    let mut snap = Snap(HashMap::new());
    model.visit(&mut snap);
    ema.map(&mut Blend(snap.0, decay))
}

#[cfg(test)]
mod tests {
    #[test]
    fn decay_warms_up_to_its_maximum() {
        assert!((super::decay(0.999, 0) - 0.1).abs() < 1e-12);
        assert!(super::decay(0.999, 100) < 0.999);
        assert_eq!(super::decay(0.999, 1_000_000), 0.999);
    }
}
