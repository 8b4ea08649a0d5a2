//! diffmart's own SQL functions.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, lit,
};

use super::session;

/// `mz_now()`: the logical time the statement reads at (its snapshot's last time), as
/// Materialize names it; SUBSCRIBE's `mz_timestamp` counts the same times, so a
/// client can line a subscription up with its reads. A bigint here.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MzNow {
    signature: Signature,
}

impl MzNow {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(MzNow { signature: Signature::nullary(Volatility::Stable) })
    }
}

impl ScalarUDFImpl for MzNow {
    fn name(&self) -> &str {
        "mz_now"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    /// Replaced by the statement's time while the statement is planned, on its task.
    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        match session::statement_time() {
            Some(time) => Ok(ExprSimplifyResult::Simplified(lit(ScalarValue::Int64(Some(time as i64))))),
            None => Ok(ExprSimplifyResult::Original(args)),
        }
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        plan_err!("mz_now() is known only while a statement is planned")
    }
}
