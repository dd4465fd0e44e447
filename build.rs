//! Exposes the target interpreter's configuration (notably `Py_GIL_DISABLED`) as cfgs, and
//! the version it is built for as `WARP_CACHE_BUILT_FOR` ("3.14"), which the module reports
//! (`_warp_cache.BUILT_FOR`, with a "t" on free-threaded builds) so a test can check that
//! each interpreter of the matrix runs the build made for it.
fn main() {
    #[cfg(feature = "python")]
    {
        pyo3_build_config::use_pyo3_cfgs();
        // The field, not the getter PyO3 0.30 prefers: 0.28 (the 3.13t build) has no getter.
        #[allow(deprecated)]
        let version = pyo3_build_config::get().version;
        println!(
            "cargo:rustc-env=WARP_CACHE_BUILT_FOR={}.{}",
            version.major, version.minor
        );
    }
}
