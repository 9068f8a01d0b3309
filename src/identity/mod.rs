//! Who the caller is: SPIFFE IDs (certificates and XFCC come later).

pub mod spiffe;
