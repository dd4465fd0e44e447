//! Exposes the target interpreter's configuration (notably `Py_GIL_DISABLED`) as cfgs.
fn main() {
    #[cfg(feature = "python")]
    pyo3_build_config::use_pyo3_cfgs();
}
