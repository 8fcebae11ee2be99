func.func @fine() {
  return
}

// -----

func.func @broken() {
  retur
}
