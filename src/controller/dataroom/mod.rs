#[derive(Debug, Default)] pub struct Memory;
