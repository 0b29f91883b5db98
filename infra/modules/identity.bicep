// The user-assigned managed identity the Function App runs as: storage, Application Insights and
// PostgreSQL all authenticate it with Entra ID tokens, so no key or password exists anywhere.

@description('Required. Name of the user-assigned managed identity.')
param name string

@description('Optional. Location of the identity.')
param location string = resourceGroup().location

@description('Optional. Tags applied to the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

@description('The identity\'s name (also its PostgreSQL role name).')
output name string = identity.name

@description('The identity\'s resource id.')
output resourceId string = identity.id

@description('The identity\'s client (application) id: AZURE_CLIENT_ID and the *__clientId settings.')
output clientId string = identity.properties.clientId

@description('The identity\'s object (principal) id, used by role assignments and PostgreSQL.')
output principalId string = identity.properties.principalId
