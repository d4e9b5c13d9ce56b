package controllers

// ImportRequest lets the envtest specs (package controllers_test) write a
// version answering an import request, as the Key reconciler does.
var ImportRequest = importRequest
